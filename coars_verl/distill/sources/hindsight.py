"""``hindsight``: the rest of this very dialogue, every recommendation, every answer and the outcome.

The ground-truth title is never named (only whether the outcome was right). Nothing to say on a
single-turn task, which has no feedback beyond its reward.
"""

from __future__ import annotations

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_USER
from coars_verl.distill.context_text import fit_budget, outcome_line, turn_lines
from coars_verl.distill.contexts import NEEDS_DIALOGUE, SampleEvidence, TeacherSource, register_teacher_source

HEADERS = {
    ROLE_RECOMMENDER: "Hindsight on this dialogue (how the user answered each recommendation and how it ended):",
    ROLE_USER: "Hindsight on this conversation (every suggestion, your answers and how it ended):",
}


def whole_dialogue(evidence: SampleEvidence) -> str | None:
    """Every turn and the outcome of the sample's own dialogue; None when no turn was played."""
    transcript = evidence.transcript
    if not transcript.turns:
        return None
    lines = [HEADERS[evidence.role]] + turn_lines(evidence.role, transcript, include_rec_reason=False)
    return fit_budget(lines + [outcome_line(evidence.role, transcript)], evidence.max_chars)


SUMMARY = "this dialogue's feedback and final outcome, the target never named"
HINDSIGHT = register_teacher_source(TeacherSource(name="hindsight", summary=SUMMARY, needs=(NEEDS_DIALOGUE,), headers=HEADERS,
                                                  dialogue=whole_dialogue))
