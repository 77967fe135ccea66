"""The mutation check's list stays applicable: each mutant's text occurs exactly once in the
current source (a refactor that moves the code must move the mutant too), and a stale one is an error."""

import pytest

from coars_verl.bench.mutants import MUTANTS, REPO_ROOT, Mutant, apply


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_applies_exactly_once_and_names_existing_tests(mutant):
    assert (REPO_ROOT / mutant.path).read_text().count(mutant.old) == 1
    assert mutant.old != mutant.new and all((REPO_ROOT / f).is_file() for f in mutant.first)


def test_the_filed_mutants_are_listed():
    assert {"M1", "M2", "M3", "M20", "G1", "W1", "R1"} <= {m.name for m in MUTANTS}


def test_a_stale_mutant_is_an_error_naming_it(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(RuntimeError, match="M9.*found 0"):
        apply(Mutant("M9", "gone", "a.py", "y = 2", "y = 3", ()), tmp_path)
