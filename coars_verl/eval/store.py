"""Resumable per-sample results: append-only JSONL files plus the options they were made with.

``OUT/run.json`` holds the options that decide the results (model, data files and their SHA-256,
selection, dialogue rules, budgets, backend); a later run into the same folder must give the
same ones or is refused with the differences listed. ``OUT/<task>.jsonl`` holds one JSON object
per finished sample, each with its ``key``; lines are appended and flushed (and fsync'd) after
each finished batch. A line cut short by a kill is dropped on the next start (the file is
truncated to its last complete line), so that sample is simply done again.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

RUN_FILE = "run.json"


class OptionsMismatch(ValueError):
    """The output folder holds results made with other options."""


def write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    lines = []
    for key in sorted(set(stored) | set(given)):
        old, new = stored.get(key, "<absent>"), given.get(key, "<absent>")
        if old != new:
            lines.append(f"  {key}: stored {json.dumps(old)}, given {json.dumps(new)}")
    return lines


class ResultStore:
    def __init__(self, out_dir: str | Path, options: Mapping[str, Any]):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.options = json.loads(json.dumps(dict(options)))  # what JSON keeps (tuples -> lists)
        run_file = self.out_dir / RUN_FILE
        if run_file.exists():
            with open(run_file, encoding="utf-8") as fh:
                stored = json.load(fh).get("options", {})
            diff = _differences(stored, self.options)
            if diff:
                raise OptionsMismatch(
                    f"{self.out_dir} holds results made with other options; use another --out, or the same "
                    "options to resume:\n" + "\n".join(diff)
                )
        else:
            write_json_atomic(run_file, {"options": self.options})

    def path(self, task: str) -> Path:
        return self.out_dir / f"{task}.jsonl"

    def load(self, task: str) -> dict[str, dict[str, Any]]:
        """Finished records of ``task`` by key (a cut-off last line is removed from the file)."""
        path = self.path(task)
        if not path.exists():
            return {}
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(path, "r+b") as fh:
                fh.truncate(len(complete))
        records: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records[str(record["key"])] = record
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a result record ({exc}); delete the line or the folder") from exc
        return records

    def append(self, task: str, records: Iterable[Mapping[str, Any]]) -> None:
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        if not lines:
            return
        with open(self.path(task), "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
