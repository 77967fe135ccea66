"""Every shell command in the README, the docs and the recipes still runs as written, so that they cannot drift.

Commands are read from each fenced ``bash`` block, from the inline code of markdown table rows
(`` `python ...` ``, `` `make ...` ``) and from the comment lines of every recipe (``recipes/**/*.yaml``
headers). ``python -m MODULE ...`` and ``python SCRIPT.py ...`` must take every ``--flag`` they are
shown with (checked against the command's own ``--help``), ``main_ppo`` commands must compose under
Hydra with their overrides, and ``make TARGET`` must name a target. A dataset's data_prep command is
shown the same way everywhere (its one home: ``recipes/dataset/<name>.yaml``).
"""

import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import verl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from coars_verl.recipes import RECIPES_DIR

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data_prep" / "README.md", ROOT / "coars_verl" / "eval" / "README.md"]
VERL_CONFIG = Path(verl.__file__).parent / "trainer" / "config"
FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*")


RECIPE_FILES = sorted(RECIPES_DIR.rglob("*.yaml"))
COMMAND_START = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:python|make)\s")


def _words(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VERL_PLATFORM=cpu python ...
        words = words[1:]
    return words


def fenced_lines(text: str) -> list[str]:
    return [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for line in block.replace("\\\n", " ").splitlines()]


def table_lines(text: str) -> list[str]:
    """The inline code spans of markdown table rows that are shell commands."""
    return [span for row in text.splitlines() if row.lstrip().startswith("|")
            for span in re.findall(r"`([^`]+)`", row) if COMMAND_START.match(span)]


def comment_lines(text: str) -> list[str]:
    """The shell commands of a YAML file's comment lines (a trailing backslash continues on the next comment line)."""
    comments = [m.group(1) for m in re.finditer(r"(?m)^\s*#(.*)$", text)]
    joined = "\n".join(comments).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if COMMAND_START.match(line.strip())]


def commands() -> list[tuple[str, list[str]]]:
    found = []
    sources = [(doc, fenced_lines(doc.read_text()) + table_lines(doc.read_text())) for doc in DOCS]
    sources += [(recipe, comment_lines(recipe.read_text())) for recipe in RECIPE_FILES]
    for where, lines in sources:
        for line in lines:
            words = _words(line)
            if words:
                found.append((f"{where.relative_to(ROOT)}: {line.strip()[:80]}", words))
    return found


COMMANDS = commands()


@lru_cache(maxsize=None)
def help_text(*entry: str) -> str:
    run = subprocess.run([sys.executable, *entry, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{' '.join(entry)} --help failed:\n{run.stderr[-2000:]}"
    return run.stdout


def _entry(words: list[str]) -> tuple[list[str], list[str]]:
    """(how to call it, its arguments) for ``python -m mod [sub]`` or ``python script.py``."""
    if words[1] == "-m":
        entry, args = ["-m", words[2]], words[3:]
        if words[2] == "coars_verl.plots" and args:  # subcommands
            entry, args = entry + [args[0]], args[1:]
        return entry, args
    return [words[1]], words[2:]


def _compose_main_ppo(args: list[str]):
    path, name, overrides = None, "ppo_trainer", []
    it = iter(args)
    for word in it:
        if word == "--config-path":
            path = next(it)
        elif word == "--config-name":
            name = next(it)
        elif "=" in word and word != "...":
            overrides.append(re.sub(r"\$\{?[A-Z_]+\}?", "/tmp/x", word))
    directory = VERL_CONFIG if path is None else RECIPES_DIR if ("recipes" in path or path.startswith("pkg://coars_verl")) else Path(path)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(directory), version_base=None):
        return compose(config_name=name, overrides=overrides)


def test_the_docs_have_commands_to_check():
    kinds = {words[0] for _, words in COMMANDS}
    assert {"python", "make"} <= kinds and len(COMMANDS) > 30
    # the table rows and the recipe headers are read too, not only the fenced blocks
    assert any(where.startswith("README.md: python data_prep/instruments.py") for where, _ in COMMANDS)
    assert sum(where.startswith("coars_verl/recipes/") for where, _ in COMMANDS) >= 10


# The scripts that prepare one of the recipes' datasets (data_prep/reczero.py derives rows from any of them).
DATASET_SCRIPTS = ("data_prep/llara.py", "data_prep/movielens.py", "data_prep/instruments.py", "data_prep/lastfm.py")


def _normalised(words: list[str]) -> list[str]:
    """A data_prep command with the data folder spelt one way ($COARS_DATA_DIR is data/ by default)."""
    return [re.sub(r"^\$\{?COARS_DATA_DIR\}?", "data", word) for word in words]


def data_prep_commands_by_dataset() -> dict[str, set[tuple[str, str]]]:
    """{dataset: {(normalised command, where)}} for every data_prep command shown beside a dataset recipe: in a
    recipe's or dataset part's header, and in a markdown table row that names coars_<dataset> or reczero_<dataset>."""
    shown: dict[str, set[tuple[str, str]]] = {}

    def add(dataset: str, line: str, where: str) -> None:
        words = _words(line)
        if len(words) > 1 and words[1] in DATASET_SCRIPTS and "..." not in words:
            shown.setdefault(dataset, set()).add((" ".join(_normalised(words)), where))

    for recipe in RECIPE_FILES:
        match = re.fullmatch(r"(?:coars_|reczero_)?(\w+)", recipe.stem)
        if recipe.parent.name in ("dataset", RECIPES_DIR.name) and match:
            for line in comment_lines(recipe.read_text()):
                add(match.group(1), line, str(recipe.relative_to(ROOT)))
    for doc in DOCS:
        for row in doc.read_text().splitlines():
            names = set(re.findall(r"(?:coars|reczero)_(lastfm|movielens|instruments)\b", row))
            if row.lstrip().startswith("|") and len(names) == 1:
                for line in table_lines(row):
                    add(next(iter(names)), line, str(doc.relative_to(ROOT)))
    return shown


def test_each_dataset_is_prepared_by_one_command_everywhere_it_is_shown():
    shown = data_prep_commands_by_dataset()
    assert {"lastfm", "movielens", "instruments"} <= set(shown), shown
    for dataset, found in shown.items():
        variants = {command for command, _ in found}
        assert len(variants) == 1, f"{dataset} is prepared differently in different places:\n" + "\n".join(
            f"  {where}: {command}" for command, where in sorted(found, key=lambda f: f[1]))


@pytest.mark.parametrize("where, words", [c for c in COMMANDS if c[1][0] == "python" and len(c[1]) > 1], ids=lambda v: v if isinstance(v, str) else "")
def test_python_commands_take_the_flags_they_are_shown_with(where, words):
    if words[1:3] == ["-m", "verl.trainer.main_ppo"]:
        _compose_main_ppo(words[3:])
        return
    if words[1] == "-c" or (words[1] != "-m" and not words[1].endswith(".py")):
        pytest.skip("not a module or script call")
    entry, args = _entry(words)
    text = help_text(*entry)
    shown = {flag for arg in args for flag in FLAG.findall(arg)} - {"--help"}
    missing = sorted(flag for flag in shown if flag not in text)
    assert not missing, f"{where}: {' '.join(entry)} does not take {missing}"


@pytest.mark.parametrize("where, words", [c for c in COMMANDS if c[1][0] == "make"], ids=lambda v: v if isinstance(v, str) else "")
def test_make_commands_name_a_target(where, words):
    makefile = (ROOT / "Makefile").read_text()
    targets = [w for w in words[1:] if "=" not in w]
    for target in targets:
        assert re.search(rf"(?m)^{re.escape(target)}:", makefile), f"{where}: no make target {target}"
