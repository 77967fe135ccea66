"""The words teacher contexts are made of, shared by the sources in :mod:`coars_verl.distill.sources`
(pure stdlib).

Every sentence about a dialogue is phrased for the role that reads it (the recommender hears about
"the user", the user agent about "you"), and none names an item the reader has not seen: an
outcome says whether the final item was the one wanted, never which item that was.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_USER
from coars_verl.dialogue.matching import ELLIPSIS, one_line
from coars_verl.dialogue.transcript import Transcript

MAX_REASON_CHARS = 200
"""A reason shown in a context is cut to this (and a memory record stores no more of it)."""


def fit_budget(lines: Sequence[str], max_chars: int | None) -> str:
    """Join ``lines`` with newlines; if longer than ``max_chars``, cut and end with "…".

    The result never exceeds ``max_chars`` characters. ``max_chars=None`` means no limit.
    """
    text = "\n".join(lines)
    if max_chars is None or len(text) <= max_chars:
        return text
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1 or None, got {max_chars}")
    return text[: max(max_chars - 1, 0)].rstrip() + ELLIPSIS  # keeps the line breaks


def quoted(title: str | None) -> str:
    return f'"{title}"' if title else "(no valid item)"


def because(reason: str) -> str:
    reason = one_line(reason, MAX_REASON_CHARS)
    return f" ({reason})" if reason else ""


def outcome_sentence(role: str, accepted: str | None, hit: bool, final_item: str | None, turns: int) -> str:
    """One sentence on how a dialogue ended, phrased for ``role``; never names an unseen target."""
    who, whose = ("you", "you") if role == ROLE_USER else ("the user", "they")
    if accepted:
        if hit:
            return f"{who} accepted {quoted(accepted)}, which was the item {whose} wanted"
        return f"{who} accepted {quoted(accepted)}, but it was not the item {whose} wanted"
    text = f"no item was accepted in {turns} turn{'s' if turns != 1 else ''}"
    if hit and final_item:
        text += f"; the last suggestion {quoted(final_item)} was the item {whose} wanted"
    return text


def _answer_words(answer: str | None) -> str:
    return f"said {answer}" if answer else "gave no valid answer"


def turn_lines(role: str, transcript: Transcript, include_rec_reason: bool) -> list[str]:
    """One line per turn of ``transcript``, phrased for ``role``."""
    lines = []
    for r in transcript.turns:
        if not r.valid:
            who = "your answer" if role == ROLE_RECOMMENDER else "the recommender's answer"
            lines.append(f"Turn {r.turn}: {who} named no valid candidate.")
            continue
        rec_reason = f" (reason: {one_line(r.rec_reason, MAX_REASON_CHARS)})" if include_rec_reason and r.rec_reason else ""
        user_reason = f": {one_line(r.user_reason, MAX_REASON_CHARS)}" if r.user_reason else ""
        if role == ROLE_RECOMMENDER:
            lines.append(f"Turn {r.turn}: you recommended {quoted(r.rec_item_title)}{rec_reason}; "
                         f"the user {_answer_words(r.answer)}{user_reason}")
        else:
            lines.append(f"Turn {r.turn}: the recommender suggested {quoted(r.rec_item_title)}{rec_reason}; "
                         f"you {_answer_words(r.answer)}{user_reason}")
    return lines


def outcome_line(role: str, transcript: Transcript) -> str:
    accepted, final = transcript.accepted_turn, transcript.final_turn
    return "Outcome: " + outcome_sentence(role, accepted.rec_item_title if accepted else None, transcript.hit,
                                          final.rec_item_title if final else None, transcript.num_turns) + "."


def record_outcome(role: str, record: Mapping[str, Any]) -> str:
    """:func:`outcome_sentence` of a stored memory record (:func:`coars_verl.distill.memory.compact_record`)."""
    return outcome_sentence(role, record.get("accepted"), bool(record.get("hit")), record.get("final_item"), int(record.get("turns") or 0))
