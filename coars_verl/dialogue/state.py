"""The turn state machine of one CoARS dialogue (docs/method.md, "How one training step works", step 1), driven step by step by an agent loop.

The agent loop keeps ONE chat token stream per role. For each step it asks ``next_role()``, appends
``pending_messages(role)`` (observations, mask 0) to that role's stream, generates the role's answer
(mask 1, appended by the loop itself: ``pending_messages`` never repeats a role's own answers) and
hands the text to ``submit(role, text)``. Model text never raises here; only misuse of the protocol
(the wrong role, a finished dialogue) does.

Turn k:

1. The recommender answers. An invalid item (unparsable, not a candidate, already recommended)
   loses the turn: the environment explains why to the recommender; the user agent does not act.
2. Otherwise the user agent sees the recommendation and its reason (its first message also holds
   its history and the candidates, never the target) and answers. Yes ends the dialogue. No, or an
   unparsable answer (counted as a rejection and recorded as a user format error), sends the
   rejection and the user's reason to the recommender; an unparsable user answer is explained to
   the user the next time it acts.
3. After ``max_turns`` turns the dialogue ends; ``finish_early`` ends it at any point.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Iterable, Mapping

from coars_verl.constants import (
    EI_CANDIDATE_ITEM_IDS,
    EI_CANDIDATE_TITLES,
    EI_HISTORY_TITLES,
    EI_TARGET_ITEM_ID,
    EI_TARGET_TITLE,
    EI_USER_ID,
    ROLE_RECOMMENDER,
    ROLE_USER,
    check_role,
)
from coars_verl.dialogue.matching import CandidateIndex, neutralize_markers, one_line, same_title, storable_text
from coars_verl.dialogue.parsers import DEFAULT_MAX_REASON_CHARS, parse_decision, parse_recommendation
from coars_verl.dialogue.prompts import (
    PromptTemplates,
    recommender_initial_messages,
    user_initial_messages,
    validate_templates,
)
from coars_verl.dialogue.transcript import DECISION_NO, DECISION_YES, END_ACCEPTED, END_MAX_TURNS, Transcript, TurnRecord
from coars_verl.utils.config_reader import read_section

# --------------------------------------------------------------------------------------------------
# The sample


@dataclass(frozen=True)
class DialogueSample:
    """One episode's data. Item ids are kept as strings; ``candidate_item_ids`` may be empty (titles only)."""

    user_id: str
    history_titles: tuple[str, ...]
    candidate_titles: tuple[str, ...]
    candidate_item_ids: tuple[str, ...]
    target_title: str
    target_item_id: str

    def __post_init__(self) -> None:
        # Lists are accepted on construction and stored as tuples, so the sample stays immutable.
        for name in ("history_titles", "candidate_titles", "candidate_item_ids"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._check()

    def _check(self) -> None:
        """Reject data that would make the dialogue meaningless (a data bug, not model output)."""
        if not self.candidate_titles:
            raise ValueError(f"{EI_CANDIDATE_TITLES}: the candidate list is empty")
        for name in ("history_titles", "candidate_titles", "candidate_item_ids"):
            for position, value in enumerate(getattr(self, name)):
                if not isinstance(value, str) or (name == "candidate_titles" and not value.strip()):
                    raise ValueError(f"{name}[{position}]: expected a non-empty string, got {value!r}")
        if self.candidate_item_ids and len(self.candidate_item_ids) != len(self.candidate_titles):
            raise ValueError(
                f"{EI_CANDIDATE_ITEM_IDS}: {len(self.candidate_item_ids)} ids for "
                f"{len(self.candidate_titles)} candidate titles"
            )
        for name in ("user_id", "target_title", "target_item_id"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name}: expected a string, got {getattr(self, name)!r}")
        if not any(self.is_target(position) for position in range(len(self.candidate_titles))):
            raise ValueError(
                f"{EI_TARGET_TITLE}/{EI_TARGET_ITEM_ID}: the target ({self.target_title!r}, id "
                f"{self.target_item_id!r}) is not among the candidates"
            )

    @classmethod
    def from_extra_info(cls, extra_info: Mapping[str, Any]) -> "DialogueSample":
        """Build from a data row's ``extra_info`` (keys ``constants.EI_*``); ValueError names a missing/bad field.

        Required: history titles (may be empty), candidate titles, target title. Optional: user id,
        candidate item ids (then also the target item id is used for matching).
        """
        if not isinstance(extra_info, Mapping):
            raise ValueError(f"extra_info: expected a mapping, got {type(extra_info).__name__}")
        return cls(
            user_id=_optional_id(extra_info, EI_USER_ID),
            history_titles=_string_list(extra_info, EI_HISTORY_TITLES, required=True),
            candidate_titles=_string_list(extra_info, EI_CANDIDATE_TITLES, required=True),
            candidate_item_ids=_id_list(extra_info, EI_CANDIDATE_ITEM_IDS),
            target_title=_required_string(extra_info, EI_TARGET_TITLE),
            target_item_id=_optional_id(extra_info, EI_TARGET_ITEM_ID),
        )

    def item_id(self, position: int) -> str:
        """The item id of a candidate, or "" when the sample has no ids."""
        return self.candidate_item_ids[position] if self.candidate_item_ids else ""

    def is_target(self, position: int) -> bool:
        """Case-insensitive exact title match, or item id match (Hit@1's rule)."""
        if self.target_item_id and self.item_id(position) == self.target_item_id:
            return True
        return bool(self.target_title.strip()) and same_title(self.candidate_titles[position], self.target_title)


def _sequence(extra_info: Mapping[str, Any], key: str) -> list[Any]:
    """A list field (list, tuple or numpy array from parquet); a bare string is an error, not a list of chars."""
    value = extra_info[key]
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"extra_info[{key!r}]: expected a list, got {type(value).__name__}")
    return list(value)


def _string_list(extra_info: Mapping[str, Any], key: str, required: bool) -> tuple[str, ...]:
    if key not in extra_info or extra_info[key] is None:
        if required:
            raise ValueError(f"extra_info: missing field {key!r}")
        return ()
    values = _sequence(extra_info, key)
    for position, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"extra_info[{key!r}][{position}]: expected a string, got {value!r}")
    return tuple(str(value) for value in values)


def _id_text(value: Any, where: str) -> str:
    """An item/user id as a string; integers (numpy ones included) are accepted and converted."""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    raise ValueError(f"{where}: expected a string or integer id, got {value!r}")


def _id_list(extra_info: Mapping[str, Any], key: str) -> tuple[str, ...]:
    if key not in extra_info or extra_info[key] is None:
        return ()
    return tuple(_id_text(value, f"extra_info[{key!r}][{i}]") for i, value in enumerate(_sequence(extra_info, key)))


def _optional_id(extra_info: Mapping[str, Any], key: str) -> str:
    value = extra_info.get(key)
    return "" if value is None else _id_text(value, f"extra_info[{key!r}]")


def _required_string(extra_info: Mapping[str, Any], key: str) -> str:
    if key not in extra_info or extra_info[key] is None:
        raise ValueError(f"extra_info: missing field {key!r}")
    value = extra_info[key]
    if not isinstance(value, str):
        raise ValueError(f"extra_info[{key!r}]: expected a string, got {value!r}")
    return str(value)


# --------------------------------------------------------------------------------------------------
# The configuration


@dataclass(frozen=True)
class DialogueConfig:
    """Dialogue settings (recipe keys ``coars.dialogue.*``; templates come from ``coars.prompts.*``)."""

    max_turns: int = field(default=5, metadata={"help": (
        "Turns before the dialogue ends without an accepted item (a turn: one recommendation and, if valid, "
        "the user agent's answer).")})
    numbered_candidates: bool = field(default=True, metadata={"help": (
        "Show candidates as a numbered list; only then may the recommender answer with a number.")})
    templates: PromptTemplates = field(default=PromptTemplates(), metadata={"help": (
        "The prompt templates (recipe keys coars.prompts.*, each overriding one template).")})
    max_reason_chars: int = field(default=DEFAULT_MAX_REASON_CHARS, metadata={"help": (
        "Longest reason forwarded to the partner agent (longer ones are cut with an ellipsis).")})
    control_markers: tuple[str, ...] = field(default=(), metadata={"help": (
        "The tokenizer's special tokens: neutralised in every text one agent forwards to the other "
        "(set by the agent loop and the evaluation from their tokenizer; not a recipe key).")})

    def __post_init__(self) -> None:
        object.__setattr__(self, "control_markers", tuple(str(m) for m in self.control_markers))
        for name in ("max_turns", "max_reason_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"coars.dialogue.{name}: expected an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.numbered_candidates, bool):
            raise ValueError(
                f"coars.dialogue.numbered_candidates: expected true/false, got {self.numbered_candidates!r}"
            )
        if not isinstance(self.templates, PromptTemplates):
            raise ValueError(f"templates: expected PromptTemplates, got {type(self.templates).__name__}")
        validate_templates(self.templates)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any] | None = None, prompts: Mapping[str, str] | None = None
    ) -> "DialogueConfig":
        """Build from ``coars.dialogue`` (and optionally ``coars.prompts``); unknown keys are an error
        (:func:`coars_verl.utils.config_reader.read_section`)."""
        return read_section(cls, mapping, "coars.dialogue", exclude=("control_markers",),
                            templates=PromptTemplates.from_overrides(prompts))


# --------------------------------------------------------------------------------------------------
# Events


class TurnOutcome(str, Enum):
    """What one ``submit`` did."""

    RECOMMENDED = "recommended"
    INVALID_RECOMMENDATION = "invalid_recommendation"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNPARSABLE_DECISION = "unparsable_decision"
    """The user's answer had no readable decision; it counts as a rejection."""


@dataclass(frozen=True)
class TurnEvent:
    """The result of one ``submit``: what happened and whether the dialogue is over."""

    role: str
    turn: int
    outcome: TurnOutcome
    item_title: str
    """The item the recommender named (also a repeated one); "" when it named no candidate."""
    problem: str
    """Why the answer was not accepted, in plain words; "" when it was."""
    done: bool
    end_reason: str

    @property
    def valid(self) -> bool:
        return not self.problem


class DialogueProtocolError(RuntimeError):
    """The caller broke the protocol (wrong role, dialogue over): a programming error, not model output."""


# --------------------------------------------------------------------------------------------------
# The dialogue


class Dialogue:
    """One dialogue between the recommender and the user agent, advanced one answer at a time."""

    def __init__(self, sample: DialogueSample, config: DialogueConfig = DialogueConfig()):
        self.sample = sample
        self.config = config
        self._candidates = CandidateIndex(sample.candidate_titles)
        self._transcript = Transcript(
            user_id=sample.user_id,
            target_title=sample.target_title,
            target_item_id=sample.target_item_id,
            max_turns=config.max_turns,
        )
        self._turn = 1
        self._awaiting: str | None = ROLE_RECOMMENDER
        self._recommended: list[int] = []
        self._outbox: dict[str, list[dict[str, str]]] = {
            ROLE_RECOMMENDER: recommender_initial_messages(
                sample.history_titles, sample.candidate_titles, config.templates, config.numbered_candidates
            ),
            ROLE_USER: [],
        }
        self._user_introduced = False
        self._user_problem = ""  # why the user's last answer was unparsable; told when it next acts

    @classmethod
    def from_extra_info(cls, extra_info: Mapping[str, Any], config: DialogueConfig = DialogueConfig()) -> "Dialogue":
        return cls(DialogueSample.from_extra_info(extra_info), config)

    # ---- state

    @property
    def transcript(self) -> Transcript:
        """The immutable record so far (a new object after every step)."""
        return self._transcript

    @property
    def done(self) -> bool:
        return self._awaiting is None

    @property
    def turn(self) -> int:
        """The 1-based turn being played; once done, the number of turns recorded (possibly 0)."""
        return self._transcript.num_turns if self.done else self._turn

    def next_role(self) -> str | None:
        """``ROLE_RECOMMENDER`` or ``ROLE_USER`` for whoever acts next; None when the dialogue is over."""
        return self._awaiting

    def pending_messages(self, role: str) -> list[dict[str, str]]:
        """Chat messages ``role`` has not seen yet, to append to its context before acting; marks them delivered.

        The first call for a role gives its system prompt and task; later calls give the
        observations since its last answer as one ``user`` message (merged, so that the roles keep
        alternating in chat templates that require it).
        """
        check_role(role)
        messages, self._outbox[role] = self._outbox[role], []
        return _merge_user_messages(messages)

    # ---- steps

    def submit(self, role: str, text: str) -> TurnEvent:
        """Record ``role``'s answer for the current turn and advance. Never raises on the text itself."""
        check_role(role)
        if self._awaiting is None:
            raise DialogueProtocolError(f"the dialogue is over ({self._transcript.end_reason}); {role} cannot answer")
        if role != self._awaiting:
            raise DialogueProtocolError(f"turn {self._turn} waits for the {self._awaiting}, not the {role}")
        if not isinstance(text, str):
            raise TypeError(f"submit expects the answer as str, got {type(text).__name__}")
        if role == ROLE_RECOMMENDER:
            return self._submit_recommendation(text)
        return self._submit_decision(text)

    def finish_early(self, reason: str) -> None:
        """End the dialogue now (e.g. ``END_BUDGET``); recorded as the end reason. No-op when already over.

        A turn whose recommendation the user has not answered stays recorded with no user decision.
        """
        if not isinstance(reason, str) or not one_line(reason):
            raise ValueError(f"finish_early needs a non-empty reason, got {reason!r}")
        if self._awaiting is not None:
            self._end(one_line(reason, 100))

    # ---- internals

    def _submit_recommendation(self, text: str) -> TurnEvent:
        answer = parse_recommendation(
            text,
            self._candidates,
            numbered=self.config.numbered_candidates,
            already_recommended=self._recommended,
            max_reason_chars=self.config.max_reason_chars,
        )
        index = answer.item_index if answer.item_index is not None else -1
        record = TurnRecord(
            turn=self._turn,
            rec_raw=storable_text(text),
            rec_item_index=index,
            rec_item_title=answer.item_title or "",
            rec_item_id=self.sample.item_id(index) if index >= 0 else "",
            rec_reason=answer.reason,
            rec_error=answer.error.value if answer.error is not None else "",
            rec_problem=answer.problem,
            valid=answer.valid,
            is_target=answer.valid and self.sample.is_target(index),
        )
        self._transcript = self._transcript.with_turn(record)
        if not answer.valid:
            explanation = self.config.templates.invalid_item_to_recommender.format(problem=self._forwarded(answer.problem))
            self._close_turn(ROLE_RECOMMENDER, explanation)
            outcome = TurnOutcome.INVALID_RECOMMENDATION
            return self._event(ROLE_RECOMMENDER, record.turn, outcome, record.rec_item_title, answer.problem)
        self._recommended.append(index)
        self._show_recommendation_to_user(record.rec_item_title, self._forwarded(answer.reason) or self.config.templates.missing_reason)
        self._awaiting = ROLE_USER
        return self._event(ROLE_RECOMMENDER, record.turn, TurnOutcome.RECOMMENDED, record.rec_item_title, "")

    def _submit_decision(self, text: str) -> TurnEvent:
        answer = parse_decision(text, max_reason_chars=self.config.max_reason_chars)
        last = self._transcript.turns[-1]
        record = replace(
            last,
            user_raw=storable_text(text),
            user_decision=DECISION_YES if answer.accepted else DECISION_NO,
            user_reason=answer.reason,
            user_error=answer.error.value if answer.error is not None else "",
            user_problem=answer.problem,
        )
        self._transcript = self._transcript.with_last_turn(record)
        if answer.accepted:
            self._end(END_ACCEPTED)
            return self._event(ROLE_USER, record.turn, TurnOutcome.ACCEPTED, record.rec_item_title, "")
        self._user_problem = answer.problem
        feedback = self.config.templates.user_feedback_to_recommender.format(
            item=record.rec_item_title, reason=self._forwarded(answer.reason) or self.config.templates.missing_reason
        )
        self._close_turn(ROLE_RECOMMENDER, feedback)
        outcome = TurnOutcome.REJECTED if answer.valid else TurnOutcome.UNPARSABLE_DECISION
        return self._event(ROLE_USER, record.turn, outcome, record.rec_item_title, answer.problem)

    def _forwarded(self, text: str) -> str:
        """One agent's words as the other agent will read them: no control markers."""
        return neutralize_markers(text, self.config.control_markers)

    def _show_recommendation_to_user(self, item: str, reason: str) -> None:
        """Queue the recommendation for the user agent (with its intro the first time, and any format feedback)."""
        templates = self.config.templates
        if not self._user_introduced:
            self._user_introduced = True
            self._outbox[ROLE_USER].extend(
                user_initial_messages(
                    self.sample.history_titles,
                    self.sample.candidate_titles,
                    item,
                    reason,
                    templates,
                    self.config.numbered_candidates,
                )
            )
            return
        outbox = self._outbox[ROLE_USER]
        if self._user_problem:
            outbox.append(_user_message(templates.invalid_decision_to_user.format(problem=self._forwarded(self._user_problem))))
            self._user_problem = ""
        outbox.append(_user_message(templates.user_next_recommendation.format(item=item, reason=reason)))

    def _close_turn(self, observer: str, observation: str) -> None:
        """End the current turn: stop after the last turn, else tell ``observer`` what happened and go on."""
        if self._turn >= self.config.max_turns:
            self._end(END_MAX_TURNS)
            return
        self._outbox[observer].append(_user_message(observation))
        self._turn += 1
        self._awaiting = ROLE_RECOMMENDER

    def _end(self, reason: str) -> None:
        self._awaiting = None
        self._transcript = self._transcript.ended(reason)

    def _event(self, role: str, turn: int, outcome: TurnOutcome, item_title: str, problem: str) -> TurnEvent:
        return TurnEvent(role, turn, outcome, item_title, problem, self.done, self._transcript.end_reason)


def _user_message(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _merge_user_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Copies of ``messages`` with consecutive ``user`` messages joined by a blank line."""
    merged: list[dict[str, str]] = []
    for message in messages:
        if merged and message["role"] == "user" and merged[-1]["role"] == "user":
            merged[-1] = {"role": "user", "content": merged[-1]["content"] + "\n\n" + message["content"]}
        else:
            merged.append(dict(message))
    return merged


