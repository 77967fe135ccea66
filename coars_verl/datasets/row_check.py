"""The dialogue rows of a run's local data files, checked before the run starts (pure; no verl, no torch).

A row that cannot be played (a malformed ``extra_info``, no candidate list, a target outside the
candidates, an empty history) would otherwise fail inside an agent-loop worker, minutes into the
run, behind verl's replay-buffer message. :func:`dialogue_row_problems` reads each local parquet
file once and names the file, the row and the field of every such row (the first few per file),
so the driver check (:func:`coars_verl.composition.config_problems`) can refuse the run before Ray
starts. A row is checked by the code that plays it (:meth:`DialogueSample.from_extra_info`), so
the check and the dialogue cannot disagree about what a good row is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from coars_verl.constants import AGENT_LOOP_NAME, EI_HISTORY_TITLES
from coars_verl.dialogue.state import DialogueSample

SHOWN_PER_FILE = 5
"""Bad rows named per file; the rest are counted."""


def row_problem(extra_info) -> str | None:
    """Why one row's ``extra_info`` cannot be played as a dialogue, naming the field; None when it can."""
    try:
        sample = DialogueSample.from_extra_info(extra_info)
    except ValueError as error:
        return str(error)
    if not sample.history_titles:
        return f"extra_info[{EI_HISTORY_TITLES!r}]: the history is empty (the recommender would have nothing to go on)"
    return None


def file_row_problems(path: Path, default_agent_loop: str | None) -> list[str]:
    """The problems of the dialogue rows of one parquet file: rows whose ``agent_name`` is ours, or
    every row when the file has no such column and our loop is the default."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    has_agent_name = "agent_name" in names
    if not has_agent_name and default_agent_loop != AGENT_LOOP_NAME:
        return []
    columns = ["extra_info"] + (["agent_name"] if has_agent_name else [])
    if "extra_info" not in names:
        return [f"{path}: no extra_info column; the {AGENT_LOOP_NAME} agent loop reads each row's dialogue from it (prepare the "
                "file with data_prep)"]
    table = pq.read_table(path, columns=columns).to_pydict()
    agents = table.get("agent_name") or [AGENT_LOOP_NAME] * len(table["extra_info"])
    bad = [(row, problem) for row, (agent, extra_info) in enumerate(zip(agents, table["extra_info"]))
           if agent == AGENT_LOOP_NAME and (problem := row_problem(extra_info))]
    problems = [f"{path}: row {row}: {problem}" for row, problem in bad[:SHOWN_PER_FILE]]
    if len(bad) > SHOWN_PER_FILE:
        problems.append(f"{path}: {len(bad) - SHOWN_PER_FILE} more bad rows (of {len(agents)})")
    return problems


def dialogue_row_problems(files: Iterable[str], default_agent_loop: str | None) -> list[str]:
    """:func:`file_row_problems` of every local parquet file in ``files`` (others are verl's to read later)."""
    problems: list[str] = []
    for file in files:
        path = Path(file).expanduser()
        if path.is_file() and path.suffix == ".parquet":
            problems += file_row_problems(path, default_agent_loop)
    return problems
