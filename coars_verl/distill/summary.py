"""The one adapter between the transcript code's dialogue summary and the distill package.

Everything in ``coars_verl.distill`` reads a dialogue through :func:`view_summary`, so a change of
the summary format (produced by the dialogue/transcript code) only touches this file.

Accepted formats: the dialogue summary the agent loop stores (``Transcript.summary()``, read
through ``transcript.turn_dicts``), or a hand-written mapping with ``turn_records``::

    {
        "user_id": str,
        "turns": int,                  # turns played
        "hit": bool,                   # Hit@1 of the dialogue
        "final_item_title": str | None,
        "target_title": str | None,    # ground truth i*; only the "target" source shows it
        "turn_records": [
            {"turn": int, "item_title": str | None, "rec_reason": str, "valid": bool,
             "decision": "yes" | "no" | None, "user_reason": str},
            ...
        ],
    }

Stdlib only (no torch, no verl).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from coars_verl.dialogue.transcript import turn_dicts

DECISION_YES = "yes"
DECISION_NO = "no"


@dataclass(frozen=True)
class TurnView:
    """One turn of a dialogue: the recommendation and the user's answer to it."""

    turn: int
    item: str | None
    rec_reason: str
    valid: bool
    decision: str | None  # "yes" | "no" | None (unanswered or unparsable)
    user_reason: str


@dataclass(frozen=True)
class DialogueView:
    """Read-only view of one dialogue summary."""

    user_id: str
    turns: int
    hit: bool
    final_item: str | None
    target: str | None
    records: tuple[TurnView, ...]

    @property
    def accepted(self) -> TurnView | None:
        """The first valid turn the user said yes to, if any."""
        for r in self.records:
            if r.valid and r.decision == DECISION_YES:
                return r
        return None

    @property
    def rejected(self) -> tuple[TurnView, ...]:
        """Valid turns the user said no to, in turn order."""
        return tuple(r for r in self.records if r.valid and r.decision == DECISION_NO)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _opt_text(value: Any) -> str | None:
    text = _text(value)
    return text or None


def _decision(value: Any) -> str | None:
    if isinstance(value, bool):
        return DECISION_YES if value else DECISION_NO
    text = _text(value).lower()
    return text if text in (DECISION_YES, DECISION_NO) else None


def view_summary(summary: Mapping[str, Any]) -> DialogueView:
    """Adapt a dialogue summary mapping (format in the module docstring) to a :class:`DialogueView`.

    Missing keys get neutral defaults; decisions are normalised to ``"yes"``/``"no"``/``None``;
    turn records are sorted by turn number (stable).
    """
    raw_records = summary.get("turn_records")
    if raw_records is None and "rec_valid" in summary:  # a Transcript.summary() as the agent loop stores it
        raw_records = turn_dicts(summary)
    raw_records = raw_records or ()
    records = []
    for pos, rec in enumerate(raw_records):
        records.append(
            TurnView(
                turn=int(rec.get("turn", pos + 1)),
                item=_opt_text(rec.get("item_title")),
                rec_reason=_text(rec.get("rec_reason")),
                valid=bool(rec.get("valid", rec.get("item_title") is not None)),
                decision=_decision(rec.get("decision")),
                user_reason=_text(rec.get("user_reason")),
            )
        )
    records.sort(key=lambda r: r.turn)
    return DialogueView(
        user_id=_text(summary.get("user_id")),
        turns=int(summary.get("turns", len(records))),
        hit=bool(summary.get("hit", False)),
        final_item=_opt_text(summary.get("final_item_title")),
        target=_opt_text(summary.get("target_title")),
        records=tuple(records),
    )
