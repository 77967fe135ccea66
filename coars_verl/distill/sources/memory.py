"""``memory``: what earlier steps stored about this sample's user (Reflexion-style notes).

On dialogues, the ``memory_k`` most recent dialogues of the same user from earlier training steps
(the items the user rejected and why, how each ended; :func:`coars_verl.distill.memory.compact_record`).
On a single-turn task, the earlier answers and rewards of samples that share the row's
``self_distill.memory_key`` value (e.g. its user id); without that key there is no memory.
"""

from __future__ import annotations

from typing import Any, Mapping

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_SINGLE, ROLE_USER
from coars_verl.distill.context_text import because, fit_budget, quoted, record_outcome
from coars_verl.distill.contexts import NEEDS_MEMORY, SampleEvidence, TeacherSource, register_teacher_source

ANSWER_CHARS = 300
"""A single-turn answer is stored cut to this."""

HEADERS = {
    ROLE_RECOMMENDER: "Notes from earlier dialogues with this user (most recent first):",
    ROLE_USER: "Notes from your earlier conversations with the recommender (most recent first):",
    ROLE_SINGLE: "Earlier answers for this {key} and their rewards (most recent first):",
}


def dialogue_note(role: str, record: Mapping[str, Any]) -> str:
    """One line per stored dialogue (a ``compact_record`` + ``step``; a record's own ``when`` text, if
    any, replaces "at training step N")."""
    parts = []
    for rejected in record.get("rejected") or ():
        who = "the user" if role == ROLE_RECOMMENDER else "you"
        parts.append(f"{who} rejected {quoted(rejected.get('item'))}{because(rejected.get('reason') or '')}")
    invalid = int(record.get("invalid_turns") or 0)
    if invalid and role == ROLE_RECOMMENDER:
        parts.append(f"{invalid} turn{'s' if invalid != 1 else ''} lost to invalid answers")
    parts.append(record_outcome(role, record))
    where = "Dialogue" if role == ROLE_RECOMMENDER else "Conversation"
    when = record.get("when") or f"at training step {record.get('step', '?')}"
    return f"- {where} {when}: " + "; ".join(parts) + "."


def user_dialogue_notes(evidence: SampleEvidence) -> str | None:
    """The ``memory_k`` most recent stored dialogues of the sample's user, newest first; None without any."""
    if evidence.memory is None or evidence.memory_k <= 0:
        return None
    records = evidence.memory.select(evidence.memory_key, evidence.memory_k, before_step=evidence.step)
    if not records:
        return None
    lines = [HEADERS[evidence.role]] + [dialogue_note(evidence.role, record) for record in records]
    return fit_budget(lines, evidence.max_chars)


def answer_record(response: str, reward: float) -> dict[str, Any]:
    """What the memory keeps of one single-turn sample."""
    answer = response if len(response) <= ANSWER_CHARS else response[: ANSWER_CHARS - 1] + "…"
    return {"answer": answer, "reward": float(reward)}


def earlier_answers(evidence: SampleEvidence) -> str | None:
    """Earlier steps' answers (with their rewards) under the sample's memory key, newest first."""
    if evidence.memory is None or evidence.memory_key is None or evidence.memory_k <= 0:
        return None
    records = evidence.memory.select(evidence.memory_key, evidence.memory_k, before_step=evidence.step)
    if not records:
        return None
    header = HEADERS[ROLE_SINGLE].format(key=evidence.memory_key_name)
    return fit_budget([header] + [f"- reward {float(r['reward']):.3g}: {r['answer']}" for r in records], evidence.max_chars)


SUMMARY = "past dialogues of the same user from earlier steps (single-turn: earlier answers under self_distill.memory_key)"
MEMORY = register_teacher_source(TeacherSource(name="memory", summary=SUMMARY, needs=(NEEDS_MEMORY,), headers=HEADERS,
                                               dialogue=user_dialogue_notes, single_turn=earlier_answers))
