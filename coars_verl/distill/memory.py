"""Per-user memory of past dialogues: the "memory" source of the teacher context.

A record is a small JSON-serialisable dict (see :func:`compact_record`): the items the user
rejected with the user's reasons, the accepted item, the outcome, and the training step. The
store is bounded and fully deterministic:

* per user at most ``max_per_user`` records, ordered by ``(step, insertion order)``; when full the
  oldest record is dropped;
* at most ``max_users`` users; when full, the user whose last ``add`` is the oldest is dropped
  (least-recently-added; reads do not count, so ``select`` never changes the state);
* :meth:`DialogueMemory.select` returns the ``k`` most recent records of a user, newest first,
  optionally only those from steps before a given step;
* for the ``neighbor`` source, each user's latest history (item ids, :meth:`DialogueMemory.set_item_history`)
  is kept beside the records, with an item -> users index, and :meth:`DialogueMemory.neighbors`
  returns the other users whose histories share the most items with a given history (ties: the
  larger share of the other user's history, then the user id), so the same memory and history
  always give the same neighbours. A history leaves with its user.

Stdlib only (no torch, no verl). Checkpoint with :meth:`state_dict`/:meth:`save` and restore with
:meth:`load_state_dict`/:meth:`load`.
"""

from __future__ import annotations

import bisect
import copy
import json
import os
import tempfile
from collections import Counter, OrderedDict, defaultdict
from typing import Any, Iterable, Mapping

from coars_verl.dialogue.matching import one_line
from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.context_text import MAX_REASON_CHARS

STATE_FORMAT = "coars_dialogue_memory/v2"
"""v2 adds the users' histories; a v1 state (no histories) still loads."""
_READABLE_FORMATS = ("coars_dialogue_memory/v1", STATE_FORMAT)


def compact_record(dialogue: "Transcript | Mapping[str, Any]", max_reason_chars: int = MAX_REASON_CHARS) -> dict[str, Any]:
    """Compact, JSON-serialisable memory record of one dialogue (its transcript or stored summary).

    Returns ``{"rejected": [{"item": str, "reason": str}, ...], "accepted": str | None,
    "hit": bool, "turns": int, "invalid_turns": int, "final_item": str | None}``. Reasons are cut
    to ``max_reason_chars``. The ground-truth title is deliberately NOT stored.
    """
    transcript = Transcript.read(dialogue)
    accepted, final = transcript.accepted_turn, transcript.final_turn
    return {
        "rejected": [{"item": r.rec_item_title, "reason": one_line(r.user_reason, max_reason_chars)} for r in transcript.rejected_turns],
        "accepted": accepted.rec_item_title if accepted is not None else None,
        "hit": transcript.hit,
        "turns": transcript.num_turns,
        "invalid_turns": sum(1 for r in transcript.turns if not r.valid),
        "final_item": final.rec_item_title if final is not None else None,
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
        self._item_histories: dict[str, tuple[str, ...]] = {}
        self._item_users: dict[str, set[str]] = defaultdict(set)

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
            dropped, _ = self._users.popitem(last=False)
            self._drop_history(dropped)

    def set_item_history(self, user_id: Any, item_ids: Iterable[Any]) -> None:
        """Keep ``item_ids`` (the user's latest interaction history) as the user's history, for
        :meth:`neighbors`. Only users with records keep one: call it after :meth:`add`."""
        if not _names_a_user(user_id) or str(user_id) not in self._users:
            return
        uid = str(user_id)
        self._drop_history(uid)
        history = tuple(dict.fromkeys(str(item) for item in item_ids))
        self._item_histories[uid] = history
        for item in history:
            self._item_users[item].add(uid)

    def _drop_history(self, uid: str) -> None:
        for item in self._item_histories.pop(uid, ()):
            users = self._item_users[item]
            users.discard(uid)
            if not users:
                del self._item_users[item]

    def clear(self) -> None:
        self._users.clear()
        self._item_histories.clear()
        self._item_users.clear()

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

    def neighbors(self, user_id: Any, item_ids: Iterable[Any], k: int, before_step: int | None = None) -> list[tuple[str, int]]:
        """Up to ``k`` other users whose histories share items with ``item_ids``, as ``(user id,
        shared items)``, most shared first; ties: the larger share of the other user's history, then
        the user id. Only users with a record eligible under ``before_step`` count; ``user_id``
        itself never does."""
        if k <= 0:
            return []
        own = None if not _names_a_user(user_id) else str(user_id)
        shared: Counter = Counter()
        for item in dict.fromkeys(str(i) for i in item_ids):
            shared.update(self._item_users.get(item, ()))
        shared.pop(own, None)
        ranked = sorted(shared.items(), key=lambda pair: (-pair[1], -pair[1] / len(self._item_histories[pair[0]]), pair[0]))
        found = []
        for uid, count in ranked:
            if self.select(uid, 1, before_step=before_step):
                found.append((uid, count))
                if len(found) == k:
                    break
        return found

    def item_history(self, user_id: Any) -> tuple[str, ...]:
        """The history kept for ``user_id`` (empty when none)."""
        return self._item_histories.get(str(user_id), ())

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
            "histories": [[uid, list(self._item_histories[uid])] for uid in self._users if uid in self._item_histories],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the content with ``state`` (from :meth:`state_dict`).

        The limits of THIS instance apply (they come from the current config): if the saved state
        holds more, the oldest records / least recently added users are dropped.
        """
        if state.get("format") not in _READABLE_FORMATS:
            raise ValueError(f"not a DialogueMemory state (format={state.get('format')!r}, expected one of {_READABLE_FORMATS})")
        self.clear()
        for uid, records in state["users"]:
            for rec in records:
                rec = dict(rec)
                step = rec.pop("step")
                self.add(uid, rec, step)
        for uid, items in state.get("histories", ()):
            self.set_item_history(uid, items)

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
