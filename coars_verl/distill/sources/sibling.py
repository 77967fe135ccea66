"""``sibling``: a better sample of the same (prompt uid, role) group in this step.

On dialogues: the turns and outcome of the best OTHER dialogue of the group that hit, when its
reward (the reading role's) is strictly higher than the sample's own (:func:`best_hit_sibling`).
On a single-turn task: the best-scored other answer to the same prompt, when strictly higher
(:func:`best_scored_sibling`). Ties go to the lowest index.
"""

from __future__ import annotations

from typing import Sequence

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_SINGLE, ROLE_USER
from coars_verl.distill.context_text import fit_budget, outcome_line, turn_lines
from coars_verl.distill.contexts import NEEDS_GROUP, GroupMember, SampleEvidence, TeacherSource, register_teacher_source

HEADERS = {
    ROLE_RECOMMENDER: "Another attempt with this same user and the same candidates went better. How it went:",
    ROLE_USER: "Another conversation about the same candidates went better. How it went:",
    ROLE_SINGLE: "Another answer to this same task earned a higher reward ({reward:.3g} against {own:.3g}). It was:",
}


def best_hit_sibling(group: Sequence[GroupMember], position: int) -> int | None:
    """Index in ``group`` of the dialogue to show to the sample at ``position``, or None.

    Among the OTHER dialogues that hit, the one with the highest reward (ties: lowest index), and
    only if its reward is strictly higher than the sample's own."""
    if not 0 <= position < len(group):
        raise IndexError(f"position {position} out of range for a group of {len(group)}")
    own_reward = float(group[position].reward)
    best, best_reward = None, None
    for j, member in enumerate(group):
        if j == position or not member.transcript.hit:
            continue
        if best_reward is None or float(member.reward) > best_reward:
            best, best_reward = j, float(member.reward)
    if best is None or not best_reward > own_reward:
        return None
    return best


def best_scored_sibling(scores: Sequence[float], position: int) -> int | None:
    """Index of the highest-scored OTHER member of the group, if strictly above ``scores[position]``."""
    if not 0 <= position < len(scores):
        raise IndexError(f"position {position} out of range for a group of {len(scores)}")
    others = [j for j in range(len(scores)) if j != position]
    if not others:
        return None
    best = max(others, key=lambda j: (float(scores[j]), -j))
    return best if float(scores[best]) > float(scores[position]) else None


def better_dialogue(evidence: SampleEvidence) -> str | None:
    best = best_hit_sibling(evidence.group, evidence.position)
    if best is None:
        return None
    sibling = evidence.group[best].transcript
    lines = [HEADERS[evidence.role]] + turn_lines(evidence.role, sibling, include_rec_reason=True)
    return fit_budget(lines + [outcome_line(evidence.role, sibling)], evidence.max_chars)


def better_answer(evidence: SampleEvidence) -> str | None:
    scores = [member.reward for member in evidence.group]
    best = best_scored_sibling(scores, evidence.position)
    if best is None:
        return None
    header = HEADERS[ROLE_SINGLE].format(reward=float(scores[best]), own=float(scores[evidence.position]))
    return fit_budget([header, evidence.group[best].answer or ""], evidence.max_chars)


SUMMARY = ("the best successful dialogue of the same (prompt, role) group in this step, if strictly better (single-turn: the "
           "best-scored answer)")
SIBLING = register_teacher_source(TeacherSource(name="sibling", summary=SUMMARY, needs=(NEEDS_GROUP,), headers=HEADERS,
                                                dialogue=better_dialogue, single_turn=better_answer))
