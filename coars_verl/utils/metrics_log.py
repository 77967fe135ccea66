"""Read the metrics verl's ``file`` logger writes (one JSON object per step)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    """Return ``[{"step": int, **metrics}, ...]`` in file order; a malformed line is an error naming it."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                rows.append({"step": int(record["step"]), **record["data"]})
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: expected a verl file-logger record {{'step', 'data'}}: {exc}") from exc
    return rows
