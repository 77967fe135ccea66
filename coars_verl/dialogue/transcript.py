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
from typing import Any, Mapping, TypedDict

DECISION_YES = 1
DECISION_NO = 0
DECISION_NONE = -1

END_ACCEPTED = "accepted"
END_MAX_TURNS = "max_turns"
END_BUDGET = "budget"
"""Suggested reason for ``Dialogue.finish_early`` when the token budget runs out (any text is accepted)."""

SUMMARY_SCHEMA_VERSION = 2
"""2: without the derived texts (compact_text, rejected_titles, rejected_reasons) that no reader used."""

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


class DialogueSummary(TypedDict, total=False):
    """What :meth:`Transcript.summary` writes and :meth:`Transcript.from_summary` reads: the one
    format a dialogue travels in (agent loop -> reward manager, trainer, memory, evaluation files).
    Per-turn lists hold one entry per recorded turn, in turn order."""

    schema_version: int
    user_id: str
    target_title: str
    target_item_id: str
    max_turns: int
    turns: int
    end_reason: str
    # derived scalars, for metrics and logs (readers that need turns rebuild the transcript)
    hit: bool
    k_hit: int
    final_turn: int
    final_item_index: int
    final_item_title: str
    final_item_id: str
    valid_ratio: float
    rec_format_errors: int
    user_answered_turns: int
    user_format_errors: int
    false_accepts: int
    false_rejects: int
    # per turn (TurnRecord fields)
    rec_valid: list[bool]
    rec_item_indices: list[int]
    rec_item_titles: list[str]
    rec_item_ids: list[str]
    rec_reasons: list[str]
    rec_errors: list[str]
    rec_problems: list[str]
    is_target: list[bool]
    user_decisions: list[int]
    """DECISION_YES 1, DECISION_NO 0 (also an unparsable answer), DECISION_NONE -1 (did not act)."""
    user_reasons: list[str]
    user_errors: list[str]
    user_problems: list[str]
    rec_raw: list[str]
    """With ``include_raw`` only, like ``user_raw``."""
    user_raw: list[str]


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

    @property
    def answer(self) -> str | None:
        """The user's readable answer: "yes", "no", or None (it did not act, or its answer was unparsable)."""
        if not self.user_answered or self.user_error:
            return None
        return "yes" if self.user_decision == DECISION_YES else "no"


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
        """Hit@1 (module docstring): the one definition, used by the summary and the reward."""
        final = self.final_turn
        return final is not None and final.is_target

    @property
    def k_hit(self) -> int:
        """The first turn with a valid recommendation of the target, 0 if none (module docstring): the
        one definition, used by the summary and the reward."""
        return next((record.turn for record in self.turns if record.valid and record.is_target), 0)

    @property
    def accepted_turn(self) -> TurnRecord | None:
        """The first valid turn the user said yes to, if any."""
        return next((record for record in self.turns if record.valid and record.answer == "yes"), None)

    @property
    def rejected_turns(self) -> tuple[TurnRecord, ...]:
        """The valid turns the user said no to (an unparsable answer is not a reason), in turn order."""
        return tuple(record for record in self.turns if record.valid and record.answer == "no")

    @property
    def valid_ratio(self) -> float:
        """Share of recorded turns with a valid recommendation (0.0 with no turns)."""
        if not self.turns:
            return 0.0
        return sum(record.valid for record in self.turns) / len(self.turns)

    # ---- (de)serialisation

    def summary(self, include_raw: bool = True) -> "DialogueSummary":
        """A JSON-serialisable dict (scalars and lists of scalars, keys: :class:`DialogueSummary`):
        what the agent loop stores with each sample. ``include_raw`` adds the raw answer texts.
        Read it back with :meth:`from_summary`, its only reader."""
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
        }
        fields = dict(_PER_TURN_FIELDS, **(_RAW_FIELDS if include_raw else {}))
        for key, attribute in fields.items():
            summary[key] = [getattr(record, attribute) for record in self.turns]
        return summary

    @classmethod
    def read(cls, dialogue: "Transcript | Mapping[str, Any]") -> "Transcript":
        """``dialogue`` itself if it is a transcript, else :meth:`from_summary` of it."""
        return dialogue if isinstance(dialogue, Transcript) else cls.from_summary(dialogue)

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> "Transcript":
        """Rebuild a transcript from ``summary()`` output (raw texts are "" if they were left out).
        ValueError naming the problem when ``summary`` is not such a dict."""
        if not isinstance(summary, Mapping):
            raise ValueError(f"dialogue summary: expected a mapping, got {type(summary).__name__}")
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
        unknown = sorted({d for d in columns["user_decision"] if d not in (DECISION_YES, DECISION_NO, DECISION_NONE)})
        if unknown:
            raise ValueError(f"dialogue summary: unknown user decision(s) {unknown}")
        records = tuple(
            TurnRecord(turn=k + 1, **{attribute: column[k] for attribute, column in columns.items()})
            for k in range(num_turns)
        )
        return cls(
            user_id=_text(summary.get("user_id")),
            target_title=_text(summary.get("target_title")),
            target_item_id=_text(summary.get("target_item_id")),
            max_turns=int(_required(summary, "max_turns")),
            turns=records,
            end_reason=str(summary.get("end_reason", "")),
        )


def _text(value: Any) -> str:
    """A stored text field; a missing value (None, as parquet may give it) is ""."""
    return "" if value is None else str(value)


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
