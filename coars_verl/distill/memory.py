"""Per-user memory of past dialogues: the "memory" source of the teacher context.

A record is a small JSON-serialisable dict (see :func:`compact_record`): the items the user
rejected with the user's reasons, the accepted item, the outcome, and the training step. The
store is bounded and fully deterministic:

* per user at most ``max_per_user`` records, ordered by ``(step, insertion order)``; when full the
  oldest record is dropped;
* at most ``max_users`` users; when full, the user whose last ``add`` is the oldest is dropped
  (least-recently-added; reads do not count, so ``select`` never changes the state);
* :meth:`DialogueMemory.select` returns the ``k`` most recent records of a user, newest first,
  optionally only those from steps before a given step.

Stdlib only (no torch, no verl). Checkpoint with :meth:`state_dict`/:meth:`save` and restore with
:meth:`load_state_dict`/:meth:`load`.
"""

from __future__ import annotations

import bisect
import copy
import json
import os
import tempfile
from collections import OrderedDict
from typing import Any, Mapping

from coars_verl.distill.summary import view_summary

STATE_FORMAT = "coars_dialogue_memory/v1"


def _clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max(max_chars - 1, 0)].rstrip() + "…"


def compact_record(summary: Mapping[str, Any], max_reason_chars: int = 300) -> dict[str, Any]:
    """Compact, JSON-serialisable memory record of one dialogue summary.

    Returns ``{"rejected": [{"item": str, "reason": str}, ...], "accepted": str | None,
    "hit": bool, "turns": int, "invalid_turns": int, "final_item": str | None}``. Reasons are cut
    to ``max_reason_chars``. The ground-truth title is deliberately NOT stored.
    """
    view = view_summary(summary)
    accepted = view.accepted
    return {
        "rejected": [{"item": r.item, "reason": _clip(r.user_reason, max_reason_chars)} for r in view.rejected],
        "accepted": accepted.item if accepted is not None else None,
        "hit": view.hit,
        "turns": view.turns,
        "invalid_turns": sum(1 for r in view.records if not r.valid),
        "final_item": view.final_item,
    }


def _names_a_user(user_id: Any) -> bool:
    """False for a missing (None or blank) id: such samples belong to no user."""
    return user_id is not None and bool(str(user_id).strip())


class DialogueMemory:
    """Bounded per-user store of compact dialogue records (see module docstring for the rules)."""

    def __init__(self, max_per_user: int = 4, max_users: int = 50_000) -> None:
        if int(max_per_user) < 1 or int(max_users) < 1:
            raise ValueError(f"max_per_user and max_users must be >= 1, got {max_per_user}, {max_users}")
        self.max_per_user = int(max_per_user)
        self.max_users = int(max_users)
        self._users: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    # ------------------------------------------------------------------ writes
    def add(self, user_id: Any, record: Mapping[str, Any], step: int) -> None:
        """Store a copy of ``record`` (JSON-serialisable mapping) for ``user_id`` at training ``step``.

        ``user_id`` is normalised with ``str``. The stored record gets a ``"step"`` key. A missing
        (``None`` or blank) id stores nothing: samples without a user id (LLaRA's files) belong to
        no user, and pooling them would show one person's dialogues as another's memory.
        """
        if not _names_a_user(user_id):
            return
        stored = json.loads(json.dumps(dict(record)))  # deep copy + proof of JSON-serialisability
        stored["step"] = int(step)
        uid = str(user_id)
        records = self._users.pop(uid, [])
        steps = [r["step"] for r in records]
        records.insert(bisect.bisect_right(steps, stored["step"]), stored)
        del records[: max(len(records) - self.max_per_user, 0)]
        self._users[uid] = records  # (re)inserted at the end: most recently added user
        while len(self._users) > self.max_users:
            self._users.popitem(last=False)

    def clear(self) -> None:
        self._users.clear()

    # ------------------------------------------------------------------- reads
    def select(self, user_id: Any, k: int, before_step: int | None = None) -> list[dict[str, Any]]:
        """The ``k`` most recent records of ``user_id``, newest first (copies).

        With ``before_step``, only records with ``step < before_step`` are eligible (use the current
        step so that dialogues of this very step never serve as memory). Unknown user -> ``[]``.
        """
        if not _names_a_user(user_id):
            return []
        records = self._users.get(str(user_id), [])
        if before_step is not None:
            records = [r for r in records if r["step"] < before_step]
        if k <= 0:
            return []
        return [copy.deepcopy(r) for r in reversed(records[-k:])]

    def users(self) -> list[str]:
        """User ids, least recently added first."""
        return list(self._users)

    def num_records(self) -> int:
        return sum(len(r) for r in self._users.values())

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, user_id: Any) -> bool:
        return str(user_id) in self._users

    # ---------------------------------------------------------------- persist
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: limits and the users (least recently added first) with records."""
        return {
            "format": STATE_FORMAT,
            "max_per_user": self.max_per_user,
            "max_users": self.max_users,
            "users": [[uid, copy.deepcopy(recs)] for uid, recs in self._users.items()],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the content with ``state`` (from :meth:`state_dict`).

        The limits of THIS instance apply (they come from the current config): if the saved state
        holds more, the oldest records / least recently added users are dropped.
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DialogueMemory state (format={state.get('format')!r}, expected {STATE_FORMAT!r})")
        self._users.clear()
        for uid, records in state["users"]:
            for rec in records:
                rec = dict(rec)
                step = rec.pop("step")
                self.add(uid, rec, step)

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` as JSON to ``path`` atomically (temp file + fsync + rename)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.state_dict(), f, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def load(self, path: str | os.PathLike) -> None:
        """Replace the content with the state saved at ``path`` (see :meth:`load_state_dict`)."""
        with open(os.fspath(path), encoding="utf-8") as f:
            self.load_state_dict(json.load(f))
