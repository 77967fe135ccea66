"""``neighbor``: earlier dialogues of OTHER users whose histories share items with this user's
(RecNet's preference propagation across related users, as privileged context).

The most recent stored dialogue of each of the ``memory_k`` users whose item histories overlap
the sample's user's most (:meth:`coars_verl.distill.memory.DialogueMemory.neighbors`), from
earlier steps only. Not in the default order; the ablation ``teacher_neighbor`` selects it.
"""

from __future__ import annotations

from typing import Any, Mapping

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_USER
from coars_verl.distill.context_text import because, fit_budget, quoted, record_outcome
from coars_verl.distill.contexts import NEEDS_ITEM_HISTORY, NEEDS_MEMORY, SampleEvidence, TeacherSource, register_teacher_source

HEADERS = {
    ROLE_RECOMMENDER: "Earlier dialogues with other users whose histories overlap this user's (most overlap first):",
    ROLE_USER: "Earlier conversations of other users whose histories overlap yours (most overlap first):",
}


def neighbor_note(shared: int, record: Mapping[str, Any]) -> str:
    """One line per neighbour: what that user rejected and why, and how the dialogue ended."""
    parts = [f"that user rejected {quoted(r.get('item'))}{because(r.get('reason') or '')}" for r in record.get("rejected") or ()]
    parts.append(record_outcome(ROLE_RECOMMENDER, record).replace("the user", "that user", 1))
    return f"- A user sharing {shared} history item{'s' if shared != 1 else ''}: " + "; ".join(parts) + "."


def overlapping_users(evidence: SampleEvidence) -> str | None:
    """None when there is no store, no history, or no other user shares an item."""
    memory = evidence.memory
    if memory is None or evidence.memory_k <= 0 or not evidence.item_history:
        return None
    found = memory.neighbors(evidence.memory_key, evidence.item_history, evidence.memory_k, before_step=evidence.step)
    if not found:
        return None
    lines = [neighbor_note(shared, memory.select(user, 1, before_step=evidence.step)[0]) for user, shared in found]
    return fit_budget([HEADERS[evidence.role]] + lines, evidence.max_chars)


SUMMARY = "earlier dialogues of other users whose item histories overlap this user's"
NEIGHBOR = register_teacher_source(TeacherSource(name="neighbor", summary=SUMMARY, needs=(NEEDS_MEMORY, NEEDS_ITEM_HISTORY),
                                                 headers=HEADERS, dialogue=overlapping_users))
