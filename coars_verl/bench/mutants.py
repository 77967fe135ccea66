"""Mutation check of the glue between the CoARS math and verl: ``python -m coars_verl.bench.mutants``.

Each mutant is a deliberate, plausible bug (one exact text replacement) in a temporary copy of the
checkout. The tests outside ``tests/e2e`` run against the copy; a mutant is *killed* when some test
fails. Every listed mutant must be killed: a survivor is a wrong trainer the unit tests cannot see.

For speed, each mutant first runs the test files most likely to catch it (``first``); only if they
all pass does it run every other test outside ``tests/e2e``. The unmutated copy must pass the same
selection first, so a broken copy is not mistaken for a kill.

    python -m coars_verl.bench.mutants [--only M1 M2] [--out DIR]

Prints one line per mutant and writes ``DIR/mutants.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIT_TESTS = ("tests", "--ignore=tests/e2e")


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    path: str
    old: str
    new: str
    first: tuple[str, ...]
    """Test files run first (a kill there ends the mutant's run)."""


MUTANTS = (
    Mutant("M1", "OWN_REWARD_KEY swapped: each role trains on the other role's reward",
           "coars_verl/algo/role_batch.py",
           "OWN_REWARD_KEY = {ROLE_RECOMMENDER: REC_REWARD_KEY, ROLE_USER: USER_REWARD_KEY}",
           "OWN_REWARD_KEY = {ROLE_RECOMMENDER: USER_REWARD_KEY, ROLE_USER: REC_REWARD_KEY}",
           ("tests/algo/test_role_batch_on_cpu.py",)),
    Mutant("M2", "teacher and student swapped in the delta: the self-distilled credit changes sign",
           "coars_verl/algo/role_batch.py",
           "return token_delta(teacher, student_log_probs.float(), response_mask, has_context), has_context",
           "return token_delta(student_log_probs.float(), teacher, response_mask, has_context), has_context",
           ("tests/algo/test_role_batch_on_cpu.py", "tests/verl/test_teacher_pass_on_cpu.py")),
    Mutant("M3", "teacher log-probs placed one token late",
           "coars_verl/algo/role_batch.py",
           "teacher[i, :n] = log_probs.float()",
           "teacher[i, 1:n] = log_probs[:-1].float()",
           ("tests/algo/test_role_batch_on_cpu.py", "tests/verl/test_teacher_pass_on_cpu.py")),
    Mutant("M20", "the teacher record's prompt/response boundary shifted by one token (the teacher scores "
                  "the response after a prompt missing its last token)",
           "coars_verl/teacher_records.py",
           "prompt_ids = torch.tensor(list(teacher_prompt), dtype=torch.int64)",
           "prompt_ids = torch.tensor(list(teacher_prompt)[:-1], dtype=torch.int64)",
           ("tests/distill/test_teacher_prompt_on_cpu.py", "tests/verl/test_teacher_pass_on_cpu.py")),
    Mutant("G1", "advantage groups by prompt uid only: the roles are normalised together",
           "coars_verl/estimator.py",
           "list(zip(index, roles))",
           "list(index)",
           ("tests/verl/test_estimator_on_cpu.py",)),
    Mutant("G2", "teacher siblings grouped by prompt uid only: a recommender learns from a user sample's dialogue",
           "coars_verl/distill/batch_contexts.py",
           "groups[(sample.uid, sample.role)].append(i)",
           "groups[(sample.uid,)].append(i)",
           ("tests/distill/test_batch_contexts_on_cpu.py",)),
    Mutant("W1", "advantages written back to permuted rows",
           "coars_verl/trainer.py",
           "{name: response_to_nested(value, response_mask_nested) for name, value in tensors.items()}",
           "{name: response_to_nested(value.roll(1, dims=0), response_mask_nested) for name, value in tensors.items()}",
           ("tests/verl/test_trainer_write_back_on_cpu.py",)),
    Mutant("R1", "the reward manager ignores coars.reward.* (the defaults always)",
           "coars_verl/reward_manager.py",
           "self.reward_config = reward_config(config)",
           "self.reward_config = reward_config({})",
           ("tests/verl/test_reward_manager_on_cpu.py",)),
    Mutant("S1", "the outcome reward placed on the first response token instead of the last",
           "coars_verl/algo/role_batch.py",
           "(response_lengths.long() - 1).clamp(min=0)",
           "torch.zeros_like(response_lengths).long()",
           ("tests/algo/test_role_batch_on_cpu.py",)),
    Mutant("K1", "the memory stores the batch's first item history under every user (the neighbor source's overlaps go wrong)",
           "coars_verl/trainer.py",
           "self.memory.set_item_history(transcript.user_id, item_histories[i])",
           "self.memory.set_item_history(transcript.user_id, item_histories[0])",
           ("tests/verl/test_trainer_glue_on_cpu.py",)),
    Mutant("K2", "each dialogue stored twice, from both role samples (a user's memory fills with copies)",
           "coars_verl/trainer.py",
           "if transcript is not None and role == ROLE_RECOMMENDER:",
           "if transcript is not None:",
           ("tests/verl/test_trainer_glue_on_cpu.py",)),
    Mutant("K3", "the teacher pass scores tied groups again (the skip ignored: same advantages, the cost not)",
           "coars_verl/trainer.py",
           "wanted = [bool(n) and r for n, r in zip(needed.tolist(), real)]",
           "wanted = list(real)",
           ("tests/verl/test_trainer_glue_on_cpu.py",)),
)


def copy_checkout(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files of the checkout (what a commit would hold)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO_ROOT / rel
        if src.is_symlink():  # recipes/ -> coars_verl/recipes
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dest / rel)
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.path
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise RuntimeError(f"{mutant.name}: expected the text to mutate exactly once in {mutant.path}, found {count}: {mutant.old!r}")
    path.write_text(text.replace(mutant.old, mutant.new))


def run_tests(root: Path, args: list[str], timeout_s: int) -> tuple[bool, str]:
    """``(passed, last lines)`` of pytest run in ``root`` with ``root`` first on the import path."""
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore", *args]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    return proc.returncode == 0, tail


def _imports_from(root: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", "import coars_verl, os; print(os.path.dirname(coars_verl.__file__))"],
                         cwd=root, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def check_mutant(mutant: Optional[Mutant], work: Path, timeout_s: int) -> dict:
    """Run one mutant (``None``: the unmutated copy) in its own copy of the checkout."""
    root = work / (mutant.name if mutant else "baseline")
    copy_checkout(root)
    if Path(_imports_from(root)).resolve() != (root / "coars_verl").resolve():
        raise RuntimeError(f"the copy in {root} does not import its own coars_verl; the check would test the checkout")
    first = list(mutant.first) if mutant else sorted({f for m in MUTANTS for f in m.first})
    if mutant:
        apply(mutant, root)
    started = time.perf_counter()
    passed, tail = run_tests(root, first, timeout_s)
    stage = "first"
    if passed and mutant:
        stage = "rest"
        passed, tail = run_tests(root, [*UNIT_TESTS, *(f"--ignore={f}" for f in first)], timeout_s)
    shutil.rmtree(root, ignore_errors=True)
    return {"name": mutant.name if mutant else "baseline", "description": mutant.description if mutant else "no mutation",
            "killed": not passed, "stage": stage, "seconds": round(time.perf_counter() - started, 1), "tail": tail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[m.name for m in MUTANTS], help="run only these mutants")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "bench" / "mutants")
    parser.add_argument("--timeout-s", type=int, default=1800, help="per pytest run")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="coars-mutants-") as tmp:
        baseline = check_mutant(None, Path(tmp), args.timeout_s)
        if baseline["killed"]:
            print(f"the unmutated copy fails its tests; fix that first:\n{baseline['tail']}", file=sys.stderr)
            return 2
        print(f"baseline: the unmutated copy passes the mutants' first tests ({baseline['seconds']} s)")
        for mutant in mutants:
            result = check_mutant(mutant, Path(tmp), args.timeout_s)
            results.append(result)
            verdict = f"killed ({result['stage']} tests)" if result["killed"] else "SURVIVED"
            print(f"{mutant.name:4s} {verdict:22s} {result['seconds']:7.1f} s  {mutant.description}", flush=True)
    killed = sum(r["killed"] for r in results)
    print(f"score: {killed}/{len(results)} mutants killed by the tests outside tests/e2e")
    (args.out / "mutants.json").write_text(json.dumps({"killed": killed, "total": len(results), "mutants": results,
                                                        "definitions": [asdict(m) for m in mutants]}, indent=2))
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
