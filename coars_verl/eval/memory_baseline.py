"""The Reflexion-style baseline of the evaluation tool: text memory in the prompt, nothing learned.

AFL and the Reflexion-style agentic recommenders keep past dialogues as text and show them to the
recommender at inference; the weights never change. This module builds that memory for the test
users with the SAME pieces the CoARS teacher uses for its ``memory`` (and ``neighbor``) context
(:class:`coars_verl.distill.memory.DialogueMemory` and the registered teacher sources that need only
the user, :func:`coars_verl.distill.contexts.user_only_source_names`: ``memory`` and ``neighbor``),
so the baseline and the teacher read the same text:

1. the memory: each test user's earlier dialogues, played by the evaluated model itself on that
   user's windows of another split (``--memory-from-split valid``: the window just before the test
   window; with the ``neighbor`` source every user of that split plays its last window, since it
   shows other users' dialogues), or a memory saved by training (``--memory-file .../coars_memory.json``);
2. each test dialogue's recommender prompt gets the context appended to its system message, as
   the teacher's prompt does (``context_position`` "system").

A user with nothing in the memory is evaluated without a context; the results count how many had one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from coars_verl.constants import EI_HISTORY_ITEM_IDS, EI_INDEX, ROLE_RECOMMENDER
from coars_verl.distill.contexts import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MEMORY_K,
    GroupMember,
    SampleEvidence,
    first_teacher_context,
    user_only_source_names,
)
from coars_verl.distill.memory import DialogueMemory, compact_record
from coars_verl.eval.data import DialogueRow

PLAYED_WHEN = "before this one"
"""How a played memory dialogue is dated in the prompt (a training record says its step)."""


@dataclass(frozen=True)
class MemorySetting:
    """Where the memory comes from and what the prompt shows (the evaluation's ``--memory-*`` options)."""

    split: Optional[str] = None
    """Play each test user's window of this split with the evaluated model (e.g. "valid")."""
    file: Optional[str] = None
    """Or load a memory saved by training (``coars_memory.json`` in a checkpoint's step folder)."""
    sources: tuple[str, ...] = ("memory",)
    k: int = DEFAULT_MEMORY_K
    max_chars: int = DEFAULT_MAX_CHARS
    """The teacher's context budget by default."""

    @property
    def enabled(self) -> bool:
        return self.split is not None or self.file is not None

    def check(self) -> None:
        if self.split is not None and self.file is not None:
            raise ValueError("memory: give --memory-from-split or --memory-file, not both")
        usable = user_only_source_names()
        unknown = [s for s in self.sources if s not in usable]
        if unknown or not self.sources:
            raise ValueError(f"memory sources: {unknown} need more than the user (or are not registered); expected some of {list(usable)}")
        if self.k < 1 or self.max_chars < 1:
            raise ValueError(f"memory: k and max_chars must be >= 1, got {self.k}, {self.max_chars}")


def memory_rows(rows: Sequence[DialogueRow], users: set[str]) -> list[DialogueRow]:
    """The rows of ``users`` to play for the memory: each user's last window (highest index)."""
    last: dict[str, DialogueRow] = {}
    for row in rows:
        if row.user_id and row.user_id in users:
            seen = last.get(row.user_id)
            if seen is None or int(row.extra_info.get(EI_INDEX, 0)) >= int(seen.extra_info.get(EI_INDEX, 0)):
                last[row.user_id] = row
    return [last[user] for user in sorted(last)]


def played_memory(rows: Sequence[DialogueRow], play: Callable[[Sequence[DialogueRow]], list[dict]]) -> DialogueMemory:
    """A memory of one dialogue per row, played by ``play`` (rows -> dialogue summaries), with each
    user's history for the neighbor source."""
    memory = DialogueMemory(max_per_user=max(1, len(rows)), max_users=max(1, len(rows)))
    for row, summary in zip(rows, play(rows)):
        memory.add(row.user_id, {**compact_record(summary), "when": PLAYED_WHEN}, step=0)
        memory.set_item_history(row.user_id, row.extra_info.get(EI_HISTORY_ITEM_IDS) or ())
    return memory


def recommender_contexts(rows: Sequence[DialogueRow], memory: DialogueMemory, setting: MemorySetting) -> list[Optional[str]]:
    """Each test row's memory text for the recommender's prompt (the first of ``setting.sources``
    that has one), or None when the memory has nothing for the row's user."""
    contexts = []
    for row in rows:
        # a test row has no group and no reward: the user-only sources read neither
        evidence = SampleEvidence(role=ROLE_RECOMMENDER, group=(GroupMember(reward=0.0),), position=0, memory=memory,
                                  memory_key=row.user_id, item_history=row.extra_info.get(EI_HISTORY_ITEM_IDS), memory_k=setting.k,
                                  max_chars=setting.max_chars)
        contexts.append(first_teacher_context(setting.sources, evidence)[0])
    return contexts
