"""Errors and drop accounting shared by the dataset loaders and the protocol."""

from __future__ import annotations

import os
from collections import Counter
from typing import Iterator, Mapping


class DataFormatError(ValueError):
    """An input file is missing, unreadable, or not in the expected format.

    Carries the file, the (1-based) line number when one applies, and what was expected, so that
    the message alone tells a user what to fix. The CLI prints ``str(err)`` and exits with status 2.
    """

    def __init__(
        self, path: str | os.PathLike | None, expected: str, line: int | None = None, found: str | None = None
    ):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.expected = expected
        self.found = found
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}, line {line}"
        msg = f"{where}: expected {expected}"
        if found is not None:
            shown = found if len(found) <= 200 else found[:200] + "..."
            msg += f"; found {shown!r}"
        super().__init__(msg)


class DropCounter:
    """Counts rows that were dropped (merely unusable, not malformed), by reason.

    Every drop is counted under a short snake_case reason and reported in ``stats.json`` and in the
    printed summary, so that nothing is lost silently.
    """

    def __init__(self, initial: Mapping[str, int] | None = None):
        self._counts: Counter[str] = Counter()
        if initial:
            for k, v in initial.items():
                self.add(k, v)

    def add(self, reason: str, n: int = 1) -> None:
        n = int(n)
        if n < 0:
            raise ValueError(f"negative drop count for {reason!r}: {n}")
        if n:
            self._counts[reason] += n

    def get(self, reason: str) -> int:
        return int(self._counts.get(reason, 0))

    def as_dict(self) -> dict[str, int]:
        """Reasons in sorted order (deterministic JSON)."""
        return {k: int(self._counts[k]) for k in sorted(self._counts)}

    def merge(self, other: "DropCounter") -> None:
        for k, v in other.as_dict().items():
            self.add(k, v)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self.as_dict().items())

    def __len__(self) -> int:
        return len(self._counts)

    def __repr__(self) -> str:
        return f"DropCounter({self.as_dict()})"
