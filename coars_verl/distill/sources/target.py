"""``target``: the answer itself (the dialogue's ground-truth item, a single-turn task's
``reward_model.ground_truth``). It leaks what the student must find: an ablation's upper bound,
never a default.
"""

from __future__ import annotations

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_SINGLE, ROLE_USER
from coars_verl.distill.context_text import fit_budget, quoted
from coars_verl.distill.contexts import NEEDS_GROUND_TRUTH, SampleEvidence, TeacherSource, register_teacher_source

HEADERS = {
    ROLE_RECOMMENDER: "The item this user actually picks next is {item}.",
    ROLE_USER: "The item you actually want next is {item}.",
    ROLE_SINGLE: "The reference answer to this task:",
}


def target_item(evidence: SampleEvidence) -> str | None:
    target = evidence.transcript.target_title
    if not target:
        return None
    return fit_budget([HEADERS[evidence.role].format(item=quoted(target))], evidence.max_chars)


def reference_answer(evidence: SampleEvidence) -> str | None:
    if evidence.ground_truth is None or str(evidence.ground_truth).strip() == "":
        return None
    return fit_budget([HEADERS[ROLE_SINGLE], str(evidence.ground_truth)], evidence.max_chars)


SUMMARY = "the ground-truth item (leaks the answer: ablation upper bound only)"
TARGET = register_teacher_source(TeacherSource(name="target", summary=SUMMARY, needs=(NEEDS_GROUND_TRUTH,), headers=HEADERS,
                                               dialogue=target_item, single_turn=reference_answer, leaks_answer=True))
