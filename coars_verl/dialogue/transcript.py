"""The record of one dialogue: every turn as played, the end reason, and a JSON-serialisable summary.

Conventions used throughout (and in the summary):

* A *turn* is recorded once the recommender has answered in it. A dialogue cut short before the
  recommender answered (``finish_early`` at the start of a turn) records no turn for it.
* ``user_decision`` per turn: ``DECISION_YES`` (1), ``DECISION_NO`` (0), or ``DECISION_NONE`` (-1)
  when the user agent did not act (invalid recommendation, or the dialogue ended before it
  answered). An unparsable user answer is recorded as ``DECISION_NO`` (the environment treats it as
  a rejection) with a non-empty ``user_error``; the reward decides how to score it.
* ``is_target`` is true only for a *valid* recommendation of the target item.
* ``k_hit`` is the first turn (1-based) whose valid recommendation is the target, ``0`` if never.
* ``hit`` is Hit@1 of the dialogue: the final item (the last valid recommendation, whatever the
  user answered to it) is the target. No valid recommendation means no hit.
* ``false_accepts``: the user said yes to a non-target item. ``false_rejects``: the user explicitly
  said no to the target (an unparsable answer is counted as a user format error, not here).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from coars_verl.dialogue.matching import one_line

DECISION_YES = 1
DECISION_NO = 0
DECISION_NONE = -1

END_ACCEPTED = "accepted"
END_MAX_TURNS = "max_turns"
END_BUDGET = "budget"
"""Suggested reason for ``Dialogue.finish_early`` when the token budget runs out (any text is accepted)."""

SUMMARY_SCHEMA_VERSION = 1
_COMPACT_REASON_CHARS = 200

# Per-turn summary lists and the TurnRecord field each one holds.
_PER_TURN_FIELDS = {
    "rec_valid": "valid",
    "rec_item_indices": "rec_item_index",
    "rec_item_titles": "rec_item_title",
    "rec_item_ids": "rec_item_id",
    "rec_reasons": "rec_reason",
    "rec_errors": "rec_error",
    "rec_problems": "rec_problem",
    "is_target": "is_target",
    "user_decisions": "user_decision",
    "user_reasons": "user_reason",
    "user_errors": "user_error",
    "user_problems": "user_problem",
}
_RAW_FIELDS = {"rec_raw": "rec_raw", "user_raw": "user_raw"}
_NON_STR_ATTRIBUTES = {"valid": bool, "is_target": bool, "rec_item_index": int, "user_decision": int}


@dataclass(frozen=True)
class TurnRecord:
    """One turn as played. Item fields use -1 / "" when the answer named no candidate."""

    turn: int
    rec_raw: str
    rec_item_index: int
    rec_item_title: str
    rec_item_id: str
    rec_reason: str
    rec_error: str
    rec_problem: str
    valid: bool
    is_target: bool
    user_raw: str = ""
    user_decision: int = DECISION_NONE
    user_reason: str = ""
    user_error: str = ""
    user_problem: str = ""

    @property
    def user_answered(self) -> bool:
        return self.user_decision != DECISION_NONE

    @property
    def user_format_error(self) -> bool:
        return self.user_answered and bool(self.user_error)

    @property
    def false_accept(self) -> bool:
        return self.user_decision == DECISION_YES and not self.is_target

    @property
    def false_reject(self) -> bool:
        return self.user_decision == DECISION_NO and not self.user_error and self.is_target


@dataclass(frozen=True)
class Transcript:
    """Immutable record of a dialogue; the ``Dialogue`` replaces it with an extended copy at each step."""

    user_id: str
    target_title: str
    target_item_id: str
    max_turns: int
    turns: tuple[TurnRecord, ...] = ()
    end_reason: str = ""
    """Empty while the dialogue runs; then ``END_ACCEPTED``, ``END_MAX_TURNS`` or a ``finish_early`` reason."""

    # ---- building (used by Dialogue)

    def with_turn(self, record: TurnRecord) -> "Transcript":
        return replace(self, turns=self.turns + (record,))

    def with_last_turn(self, record: TurnRecord) -> "Transcript":
        return replace(self, turns=self.turns[:-1] + (record,))

    def ended(self, reason: str) -> "Transcript":
        return replace(self, end_reason=reason)

    # ---- derived facts

    @property
    def done(self) -> bool:
        return bool(self.end_reason)

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def final_turn(self) -> TurnRecord | None:
        """The turn holding the last valid recommendation (the dialogue's final item), if any."""
        for record in reversed(self.turns):
            if record.valid:
                return record
        return None

    @property
    def hit(self) -> bool:
        final = self.final_turn
        return final is not None and final.is_target

    @property
    def k_hit(self) -> int:
        return next((record.turn for record in self.turns if record.is_target), 0)

    @property
    def valid_ratio(self) -> float:
        """Share of recorded turns with a valid recommendation (0.0 with no turns)."""
        if not self.turns:
            return 0.0
        return sum(record.valid for record in self.turns) / len(self.turns)

    def compact_text(self) -> str:
        """The dialogue in a few lines, for teacher contexts and logs (reasons shortened)."""
        lines = [_compact_turn(record) for record in self.turns]
        lines.append(_compact_outcome(self))
        return "\n".join(lines)

    # ---- (de)serialisation

    def summary(self, include_raw: bool = True) -> dict[str, Any]:
        """A JSON-serialisable dict (scalars and lists of scalars) of everything the reward,
        metrics and teacher contexts need. ``include_raw`` adds the raw answer texts.

        Scalars: schema_version, user_id, target_title, target_item_id, max_turns, turns,
        end_reason, hit, k_hit (0: never), final_turn (0: none), final_item_index (-1: none),
        final_item_title, final_item_id ("" : none), valid_ratio, rec_format_errors,
        user_answered_turns, user_format_errors, false_accepts, false_rejects, compact_text.
        Per-turn lists (one entry per recorded turn): rec_valid, rec_item_indices,
        rec_item_titles, rec_item_ids, rec_reasons, rec_errors, rec_problems, is_target,
        user_decisions (1 yes / 0 no or unparsable / -1 did not act), user_reasons, user_errors,
        user_problems, and with ``include_raw`` rec_raw, user_raw. Feedback lists for teacher
        contexts: rejected_titles, rejected_reasons (valid recommendations the user did not accept,
        unparsable answers included, in turn order).
        """
        final = self.final_turn
        summary: dict[str, Any] = {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "user_id": self.user_id,
            "target_title": self.target_title,
            "target_item_id": self.target_item_id,
            "max_turns": self.max_turns,
            "turns": self.num_turns,
            "end_reason": self.end_reason,
            "hit": self.hit,
            "k_hit": self.k_hit,
            "final_turn": final.turn if final else 0,
            "final_item_index": final.rec_item_index if final else -1,
            "final_item_title": final.rec_item_title if final else "",
            "final_item_id": final.rec_item_id if final else "",
            "valid_ratio": self.valid_ratio,
            "rec_format_errors": sum(not record.valid for record in self.turns),
            "user_answered_turns": sum(record.user_answered for record in self.turns),
            "user_format_errors": sum(record.user_format_error for record in self.turns),
            "false_accepts": sum(record.false_accept for record in self.turns),
            "false_rejects": sum(record.false_reject for record in self.turns),
            "rejected_titles": [r.rec_item_title for r in self.turns if r.valid and r.user_decision == DECISION_NO],
            "rejected_reasons": [r.user_reason for r in self.turns if r.valid and r.user_decision == DECISION_NO],
            "compact_text": self.compact_text(),
        }
        fields = dict(_PER_TURN_FIELDS, **(_RAW_FIELDS if include_raw else {}))
        for key, attribute in fields.items():
            summary[key] = [getattr(record, attribute) for record in self.turns]
        return summary

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> "Transcript":
        """Rebuild a transcript from ``summary()`` output (raw texts are "" if they were left out)."""
        num_turns = int(_required(summary, "turns"))
        attributes = dict(_PER_TURN_FIELDS, **_RAW_FIELDS)
        columns = {}
        for key, attribute in attributes.items():
            if key in _RAW_FIELDS and key not in summary:
                values = [""] * num_turns
            else:
                values = _turn_list(summary, key, num_turns)
            convert = _NON_STR_ATTRIBUTES.get(attribute, str)  # parquet round trips give numpy scalars
            columns[attribute] = [convert(value) for value in values]
        records = tuple(
            TurnRecord(turn=k + 1, **{attribute: column[k] for attribute, column in columns.items()})
            for k in range(num_turns)
        )
        return cls(
            user_id=str(summary.get("user_id", "")),
            target_title=str(summary.get("target_title", "")),
            target_item_id=str(summary.get("target_item_id", "")),
            max_turns=int(_required(summary, "max_turns")),
            turns=records,
            end_reason=str(summary.get("end_reason", "")),
        )


def _required(summary: Mapping[str, Any], key: str) -> Any:
    if key not in summary:
        raise ValueError(f"dialogue summary: missing key {key!r}")
    return summary[key]


def _turn_list(summary: Mapping[str, Any], key: str, num_turns: int) -> list[Any]:
    """A per-turn list from a summary, checked for its length (lists may arrive as numpy arrays)."""
    values = list(_required(summary, key))
    if len(values) != num_turns:
        raise ValueError(f"dialogue summary: {key!r} has {len(values)} entries for {num_turns} turns")
    return values


def _compact_turn(record: TurnRecord) -> str:
    """One line per turn: what was recommended and how the user answered."""
    head = f"Turn {record.turn}: "
    if not record.valid:
        return head + f"invalid recommendation ({one_line(record.rec_problem, _COMPACT_REASON_CHARS)})"
    line = head + f"recommended '{record.rec_item_title}'"
    if record.user_decision == DECISION_NONE:
        return line + "; the user did not answer."
    if record.user_error:
        return line + "; the user's answer was unparsable (counted as no)."
    verdict = "yes" if record.user_decision == DECISION_YES else "no"
    return line + f"; user: {verdict} ({one_line(record.user_reason, _COMPACT_REASON_CHARS) or 'no reason'})."


def _compact_outcome(transcript: Transcript) -> str:
    final = transcript.final_turn
    final_text = f"'{final.rec_item_title}' (turn {final.turn})" if final else "none"
    return f"End: {transcript.end_reason or 'running'}; final item: {final_text}."


def turn_dicts(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The summary's turns as one dict per turn, for readers that prefer records to parallel lists.

    Keys: ``turn``, ``item_title`` (None when the recommendation was invalid), ``rec_reason``,
    ``valid``, ``decision`` ("yes", "no", or None when the user did not act or its answer was
    unparsable), ``user_reason``, ``user_error``, ``is_target``.
    """
    transcript = Transcript.from_summary(summary)
    return [_turn_dict(record) for record in transcript.turns]


def _turn_dict(record: TurnRecord) -> dict[str, Any]:
    decision = None
    if record.user_answered and not record.user_error:
        decision = "yes" if record.user_decision == DECISION_YES else "no"
    return {
        "turn": record.turn,
        "item_title": record.rec_item_title if record.valid else None,
        "rec_reason": record.rec_reason,
        "valid": record.valid,
        "decision": decision,
        "user_reason": record.user_reason,
        "user_error": record.user_error,
        "is_target": record.is_target,
    }


def rejected_feedback(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(rejected title, user's reason) pairs from a summary, in turn order; for teacher contexts."""
    titles: Sequence[str] = list(summary.get("rejected_titles", []))
    reasons: Sequence[str] = list(summary.get("rejected_reasons", []))
    return list(zip(titles, reasons))
