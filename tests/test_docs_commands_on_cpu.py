"""Every shell command in the README and the docs still runs as written, so that the docs cannot drift.

From each fenced ``bash`` block: ``python -m MODULE ...`` and ``python SCRIPT.py ...`` must take
every ``--flag`` they are shown with (checked against the command's own ``--help``), ``main_ppo``
commands must compose under Hydra with their overrides, and ``make TARGET`` must name a target.
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


def commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                while words and re.match(r"^[A-Z_]+=", words[0]):  # VERL_PLATFORM=cpu python ...
                    words = words[1:]
                if words:
                    found.append((f"{doc.relative_to(ROOT)}: {line.strip()[:80]}", words))
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
