"""Parsers for the two agents' answers: ``Reason: ... / Item: <title>`` and ``Reason: ... / Decision: yes|no``.

Model output is untrusted input. Both parsers accept any ``str`` and always return a frozen result:
a malformed answer is a normal outcome with an ``AnswerError`` code and a plain-words ``problem``
that the environment shows to the agent. All regular expressions are anchored per line or start
with a literal, so parsing is linear in the length of the answer.

Tolerance rules (what still counts as a well-formed answer):

* Labels are case-insensitive and may carry markdown or list decoration: ``**Item:**``,
  ``**Item**:``, ``- item :``, ``> ITEM:``, ``2. Item:``, a full-width colon. Aliases: ``Final item``,
  ``Recommended item``, ``Recommendation``; ``Final decision``; ``Reasoning``, ``Rationale``.
* Labels are looked for at line starts first. Only when no answer label starts a line are labels
  anywhere in the text used (e.g. a one-line ``Reason: ... Item: X``).
* Text before and after is ignored. A ``<think>...</think>`` block is dropped (only the text after
  the last ``</think>`` is the answer); an unclosed ``<think>`` means no answer was given.
* The value is the rest of the label's line, or the next non-empty line when that is empty
  (``**Item:**\\n The Matrix``). Markdown emphasis, backticks, quotes and ``<...>``/``[...]`` around
  the value are stripped.
* When several answer lines are present the LAST one is the answer; if an earlier one names a
  different candidate (or the other decision), the answer is ambiguous and rejected: exactly one
  item (decision) per turn.

Item resolution, in this order (the first step that finds something decides):

1. the whole value equals a candidate title after normalisation (``matching.title_key``);
2. the same after punctuation normalisation (``matching.loose_key``); never fuzzy;
3. only when candidates are shown numbered: a candidate number, ``3``, ``#3``, ``3.``, ``3)``, or a
   number followed by a title (``3. The Matrix``). Number and title must name the same candidate,
   otherwise the answer is rejected as ``number_title_mismatch``. Titles win over numbers in steps
   1 and 2, so a title that is itself a number (``1917``, ``12``) still matches as a title.

Candidate titles may repeat; an answer naming a repeated title takes the first such candidate that
was not recommended yet.

Decision resolution: the value's first word decides (yes/yeah/yep/accept/accepted or
no/nope/reject/rejected), unless the first two words are one of each (``yes/no``, ``yes or no``:
an echo of the format, ambiguous). Otherwise, if exactly one kind of those words occurs among the
first words, it decides ("Definitely yes"); both kinds are ambiguous; neither is invalid.
Negation: inside a clause, a decision word with not/never/nor/cannot/n't at most three words
before it counts as the opposite ("not accepted" and "I would not say yes" are no); "no problem",
"no doubt", "no question", "no worries", "no issue" are idioms, not a no ("No problem, accept" is yes).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Collection, NamedTuple, Sequence

from coars_verl.dialogue.matching import (
    CandidateIndex,
    clean_text,
    first_not_in,
    one_line,
    quote,
    strip_decoration,
)

logger = logging.getLogger(__name__)

_PARSER_FAILURE_PROBLEM = "The answer could not be read; use the required format."

DEFAULT_MAX_REASON_CHARS = 600
"""Reasons are forwarded into the partner's context; the cap keeps a rambling answer from eating its budget."""


class AnswerError(str, Enum):
    """Why an answer was not accepted. The value is a stable, JSON-friendly code."""

    EMPTY_ANSWER = "empty_answer"
    MISSING_ITEM = "missing_item"
    EMPTY_ITEM = "empty_item"
    NOT_IN_CANDIDATES = "not_in_candidates"
    REPEATED_ITEM = "repeated_item"
    MULTIPLE_ITEMS = "multiple_items"
    NUMBER_TITLE_MISMATCH = "number_title_mismatch"
    MISSING_DECISION = "missing_decision"
    EMPTY_DECISION = "empty_decision"
    INVALID_DECISION = "invalid_decision"
    AMBIGUOUS_DECISION = "ambiguous_decision"
    PARSER_FAILURE = "parser_failure"
    """A bug in this module, caught so that a rollout never crashes on model text (logged)."""


class _Checked:
    """What both parsed answers share: ``error`` None means the answer counts."""

    error: AnswerError | None

    @property
    def valid(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RecommendationAnswer(_Checked):
    """A parsed recommender answer.

    ``item_index`` (0-based) and ``item_title`` are set whenever the answer names exactly one
    candidate, also when it is rejected as a repetition; ``valid`` says whether the turn counts.
    """

    item_index: int | None
    item_title: str | None
    item_text: str
    """What the answer wrote after ``Item:`` (one line, shortened); empty when there was no such line."""
    reason: str
    error: AnswerError | None
    problem: str
    """Plain-words explanation for the agent; empty when valid."""


@dataclass(frozen=True)
class DecisionAnswer(_Checked):
    """A parsed user-agent answer. ``decision`` is True for yes, False for no, None when unparsable."""

    decision: bool | None
    decision_text: str
    reason: str
    error: AnswerError | None
    problem: str

    @property
    def accepted(self) -> bool:
        return self.decision is True


# --------------------------------------------------------------------------------------------------
# Labels

_LABEL_NAMES = (
    r"final\s+item|recommended\s+item|item|recommendation"
    r"|final\s+decision|decision"
    r"|reasoning|reason|rationale"
)
_LABEL_KIND = {
    "final item": "item",
    "recommended item": "item",
    "item": "item",
    "recommendation": "item",
    "final decision": "decision",
    "decision": "decision",
    "reasoning": "reason",
    "reason": "reason",
    "rationale": "reason",
}
# Decoration allowed before a label at a line start: spaces, quote marks, list bullets, markdown.
_LINE_DECORATION = r"[\s>*_`#~+\-\u2022\u00b7|\"'\u2018\u2019\u201c\u201d]"
_AFTER_LABEL = r"[\s*_`]*[:\uff1a][*_]*"  # "**Item**:", "**Item:**" (the closing emphasis too)
_LINE_LABEL = re.compile(
    rf"{_LINE_DECORATION}*(?:\d{{1,3}}[.)]{_LINE_DECORATION}*)?(?P<label>{_LABEL_NAMES}){_AFTER_LABEL}",
    re.IGNORECASE,
)
_INLINE_LABEL = re.compile(rf"(?<![^\W\d_])(?P<label>{_LABEL_NAMES}){_AFTER_LABEL}", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


class _Label(NamedTuple):  # a NamedTuple: built once per label line, and cheap to build
    """One ``Label:`` occurrence: its kind, where it starts, and the span of its value.

    A value ends at the end of its line or where the next label starts, whichever comes first;
    ``ends_line`` tells which. Bounding values by the next label keeps parsing linear even for a
    single line packed with labels.
    """

    kind: str
    start: int
    value_start: int
    value_end: int = -1
    ends_line: bool = True


def _label_kind(raw_label: str) -> str:
    return _LABEL_KIND[_WHITESPACE.sub(" ", raw_label.lower())]


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _scan_line_labels(text: str) -> list[_Label]:
    """Labels that start a line (after decoration), in text order."""
    labels = []
    pos = 0
    while pos <= len(text):
        end = _line_end(text, pos)
        match = _LINE_LABEL.match(text, pos, end)
        if match:
            labels.append(_Label(_label_kind(match.group("label")), pos, match.end()))
        pos = end + 1
    return labels


def _scan_inline_labels(text: str) -> list[_Label]:
    """Labels anywhere in the text (not preceded by a letter), in text order."""
    return [
        _Label(_label_kind(m.group("label")), m.start(), m.end()) for m in _INLINE_LABEL.finditer(text)
    ]


def _find_labels(text: str, answer_kind: str) -> list[_Label]:
    """Line-start labels, or, when none of them is an ``answer_kind`` label, labels anywhere."""
    labels = _scan_line_labels(text)
    if not any(label.kind == answer_kind for label in labels):
        inline_labels = _scan_inline_labels(text)
        if any(label.kind == answer_kind for label in inline_labels):
            labels = inline_labels
    return _with_value_spans(text, labels)


def _with_value_spans(text: str, labels: Sequence[_Label]) -> list[_Label]:
    """Give each label its value span: up to the end of its line or the next label (linear overall)."""
    spanned = []
    for position, label in enumerate(labels):
        if position + 1 < len(labels):
            next_start = labels[position + 1].start
            newline = text.find("\n", label.value_start, next_start)
            ends_line = newline >= 0
            value_end = newline if ends_line else next_start
        else:
            value_end, ends_line = _line_end(text, label.value_start), True
        spanned.append(_Label(label.kind, label.start, label.value_start, value_end, ends_line))
    return spanned


def _label_value(text: str, label: _Label) -> str:
    """The label's value; if blank at the end of its line, the next non-blank line unless that is a label line."""
    value = text[label.value_start : label.value_end]
    if strip_decoration(value.strip()) or not label.ends_line:
        return value
    pos = label.value_end + 1
    while pos <= len(text):
        next_end = _line_end(text, pos)
        line = text[pos:next_end]
        if line.strip():
            return "" if _LINE_LABEL.match(line) else line
        pos = next_end + 1
    return ""


def _reason_text(text: str, labels: Sequence[_Label], answer: _Label | None, max_chars: int) -> str:
    """The reason: the last ``Reason:`` before the answer (else the first after it), up to the next label.

    Without any reason label, the free text before the answer label stands in for it: that is
    usually the model's justification in other words.
    """
    reasons = [label for label in labels if label.kind == "reason"]
    answer_start = answer.start if answer is not None else len(text)
    before = [label for label in reasons if label.start < answer_start]
    chosen = before[-1] if before else (reasons[0] if reasons else None)
    if chosen is None:
        return one_line(text[:answer_start], max_chars)
    following = [label.start for label in labels if label.start > chosen.start]
    end = min(following) if following else len(text)
    return one_line(text[chosen.value_start : end], max_chars)


def _empty_problem(text: str) -> str:
    """Plain words for an answer with no usable text."""
    if text.strip():
        return "The answer has no text outside its <think> block."
    return "The answer was empty."


_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)


def _answer_body(text: str) -> str:
    """Cleaned text with any ``<think>`` block removed (only the final answer counts).

    Positions come from case-insensitive matches on the text itself: ``text.lower()`` can be longer
    than ``text`` (``"İ".lower()`` is two characters), so its offsets would cut the wrong place."""
    text = clean_text(text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end() :]
    opening = _THINK_OPEN.search(text)
    return text[: opening.start()] if opening else text


# --------------------------------------------------------------------------------------------------
# Items

_NUMBER_REFERENCE = re.compile(
    r"(?:#|no\.|number|candidate|option)?\s*(\d{1,6})(?!\d)(?:\s*[.):\-\u2013\u2014]\s*|\s+|$)(.*)",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class _Named:
    """The candidate positions an item value names (before the repetition check), or why none."""

    positions: tuple[int, ...]
    error: AnswerError | None = None
    problem: str = ""


def _name_item(value: str, candidates: CandidateIndex, numbered: bool) -> _Named:
    """Resolve one ``Item:`` value to candidate positions: title, loose title, then candidate number."""
    shown = strip_decoration(one_line(value))
    if not shown:
        return _Named((), AnswerError.EMPTY_ITEM, "The 'Item:' line is empty; write the exact title of one candidate.")
    positions = candidates.lookup(shown)
    if positions:
        return _Named(positions)
    if numbered:
        by_number = _name_by_number(shown, candidates)
        if by_number is not None:
            return by_number
    return _Named(
        (),
        AnswerError.NOT_IN_CANDIDATES,
        f"{quote(shown)} is not one of the candidates; copy one title exactly from the candidate list.",
    )


def _name_by_number(shown: str, candidates: CandidateIndex) -> _Named | None:
    """Resolve ``3``, ``#3``, ``3.`` or ``3. Title``; None when the value is no number reference."""
    match = _NUMBER_REFERENCE.fullmatch(shown)
    if not match:
        return None
    number = int(match.group(1))  # at most 6 digits: int() cannot hit Python's digit limit
    rest = strip_decoration(match.group(2).strip())
    in_range = 1 <= number <= len(candidates)
    if not rest:
        if in_range:
            return _Named((number - 1,))
        return _Named(
            (),
            AnswerError.NOT_IN_CANDIDATES,
            f"There is no candidate number {number}; the candidates are numbered 1 to {len(candidates)}.",
        )
    rest_positions = candidates.lookup(rest)
    if in_range and number - 1 in rest_positions:
        return _Named((number - 1,))
    if not rest_positions:
        return None  # not a "number + title" after all; report the whole value as unknown
    if in_range:
        problem = (
            f"Candidate number {number} is {quote(candidates.titles[number - 1])}, not {quote(rest)}; "
            "name exactly one candidate."
        )
    else:
        problem = f"There is no candidate number {number}; the candidates are numbered 1 to {len(candidates)}."
    return _Named((), AnswerError.NUMBER_TITLE_MISMATCH, problem)


@dataclass(frozen=True)
class _LabelScan:
    """An answer's label lines, as both parsers read them: the answer is the LAST line of the kind."""

    body: str
    empty: bool
    of_kind: list
    answer: Any
    value: str
    reason: str


def _scan_labels(text: str, kind: str, max_reason_chars: int) -> _LabelScan:
    body = _answer_body(text)
    if not body.strip():
        return _LabelScan(body, True, [], None, "", "")
    labels = _find_labels(body, kind)
    of_kind = [label for label in labels if label.kind == kind]
    answer = of_kind[-1] if of_kind else None
    value = _label_value(body, answer) if answer is not None else ""
    return _LabelScan(body, False, of_kind, answer, value, _reason_text(body, labels, answer, max_reason_chars))


def parse_recommendation(
    text: str,
    candidates: CandidateIndex | Sequence[str],
    *,
    numbered: bool = True,
    already_recommended: Collection[int] = (),
    max_reason_chars: int = DEFAULT_MAX_REASON_CHARS,
) -> RecommendationAnswer:
    """Parse a recommender answer against the candidate list.

    ``numbered`` says whether the candidates were shown numbered (only then is ``Item: 3`` a
    reference). ``already_recommended`` holds positions validly recommended in earlier turns.
    Raises only ``TypeError`` for a non-``str`` text (a programming error).
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_recommendation expects str, got {type(text).__name__}")
    index = candidates if isinstance(candidates, CandidateIndex) else CandidateIndex(candidates)
    try:
        return _parse_recommendation(text, index, numbered, frozenset(already_recommended), max_reason_chars)
    except Exception:  # a rollout must survive a parser bug; the code below makes it visible
        logger.exception("parse_recommendation failed on a %d-character answer", len(text))
        return RecommendationAnswer(None, None, "", "", AnswerError.PARSER_FAILURE, _PARSER_FAILURE_PROBLEM)


def _parse_recommendation(
    text: str, candidates: CandidateIndex, numbered: bool, excluded: frozenset[int], max_reason_chars: int
) -> RecommendationAnswer:
    scan = _scan_labels(text, "item", max_reason_chars)
    if scan.empty:
        return RecommendationAnswer(None, None, "", "", AnswerError.EMPTY_ANSWER, _empty_problem(text))
    if scan.answer is None:
        return RecommendationAnswer(None, None, "", scan.reason, AnswerError.MISSING_ITEM, "There is no 'Item:' line naming a candidate.")
    body, item_labels, value, reason = scan.body, scan.of_kind, scan.value, scan.reason
    item_text = one_line(strip_decoration(one_line(value)), 200)
    named = _name_item(value, candidates, numbered)
    if named.error is not None:
        return RecommendationAnswer(None, None, item_text, reason, named.error, named.problem)
    conflict = _conflicting_item(body, item_labels[:-1], named.positions, candidates, numbered)
    if conflict is not None:
        problem = (
            f"The answer names more than one item ({quote(candidates.titles[conflict])} and "
            f"{quote(candidates.titles[named.positions[0]])}); name exactly one."
        )
        return RecommendationAnswer(None, None, item_text, reason, AnswerError.MULTIPLE_ITEMS, problem)
    chosen = first_not_in(named.positions, excluded)
    if chosen is None:
        repeated = named.positions[0]
        title = candidates.titles[repeated]
        problem = f"{quote(title)} was already recommended in this conversation; recommend a different candidate."
        return RecommendationAnswer(repeated, title, item_text, reason, AnswerError.REPEATED_ITEM, problem)
    return RecommendationAnswer(chosen, candidates.titles[chosen], item_text, reason, None, "")


def _conflicting_item(
    text: str, earlier: Sequence[_Label], positions: tuple[int, ...], candidates: CandidateIndex, numbered: bool
) -> int | None:
    """A candidate named by an earlier ``Item:`` line that differs from the final answer, if any."""
    for label in earlier:
        other = _name_item(_label_value(text, label), candidates, numbered)
        if other.positions and set(other.positions) != set(positions):
            return other.positions[0]
    return None


# --------------------------------------------------------------------------------------------------
# Decisions

_YES_WORDS = frozenset({"yes", "yeah", "yep", "accept", "accepted"})
_NO_WORDS = frozenset({"no", "nope", "reject", "rejected"})
_WORD = re.compile(r"[^\W\d_]+")
_CLAUSE_BREAK = re.compile(r"[,.;:!?()\[\]\n\u2013\u2014]|\s-\s")
_NEGATORS = frozenset({"not", "never", "nor", "cannot", "t"})
"""``t`` is what remains of ``n't`` (``don't`` reads as ``don``, ``t``)."""
_NEGATION_REACH = 3
_NOT_A_DECISION_AFTER_NO = frozenset({"problem", "problems", "doubt", "question", "worries", "worry", "issue", "issues"})
"""``no problem``, ``no doubt``, ...: idioms, not a refusal."""
_DECISION_SCAN_CHARS = 400
_DECISION_SCAN_WORDS = 40
_FORMAT_ECHO_JOINERS = frozenset({"or", "and"})


@dataclass(frozen=True)
class _Decided:
    decision: bool | None
    error: AnswerError | None = None
    problem: str = ""


def _word_kind(word: str) -> bool | None:
    if word in _YES_WORDS:
        return True
    if word in _NO_WORDS:
        return False
    return None


def _decision_words(text: str) -> tuple[list[str], list[bool | None]]:
    """The first words of a decision value and what each says (True yes, False no, None neither).

    Within a clause (up to a comma, full stop, colon, ...), a decision word with a negator at most
    three words before it says the opposite ("not accepted", "I would not say yes" are no; "I do
    not reject it" is yes); "no" directly followed by problem, doubt, question, worries or issue
    is an idiom and says nothing ("No problem, accept" is yes)."""
    words: list[str] = []
    kinds: list[bool | None] = []
    for clause in _CLAUSE_BREAK.split(text.casefold()):
        clause_words = _WORD.findall(clause)
        for k, word in enumerate(clause_words):
            kind = _word_kind(word)
            if kind is False and word == "no" and k + 1 < len(clause_words) and clause_words[k + 1] in _NOT_A_DECISION_AFTER_NO:
                kind = None
            if kind is not None and any(w in _NEGATORS for w in clause_words[max(0, k - _NEGATION_REACH) : k]):
                kind = not kind
            words.append(word)
            kinds.append(kind)
            if len(words) >= _DECISION_SCAN_WORDS:
                return words, kinds
    return words, kinds


def _second_decision_word(words: Sequence[str], kinds: Sequence[bool | None]) -> bool | None:
    """The kind of the word after the first one, skipping a joiner ("yes or no", "yes and no")."""
    if len(words) > 2 and words[1] in _FORMAT_ECHO_JOINERS:
        return kinds[2]
    return kinds[1] if len(kinds) > 1 else None


def _decide(value: str) -> _Decided:
    """Resolve one ``Decision:`` value (see the module docstring for the rules)."""
    shown = strip_decoration(one_line(value))
    if not shown:
        problem = "The 'Decision:' line is empty; write 'Decision: yes' or 'Decision: no'."
        return _Decided(None, AnswerError.EMPTY_DECISION, problem)
    words, kinds = _decision_words(shown[:_DECISION_SCAN_CHARS])
    ambiguous = _Decided(
        None, AnswerError.AMBIGUOUS_DECISION, f"The decision {quote(shown)} says both yes and no; give exactly one."
    )
    if kinds and kinds[0] is not None:
        echo_partner = _second_decision_word(words, kinds)
        if echo_partner is not None and echo_partner != kinds[0]:
            return ambiguous  # "yes/no", "yes or no": the format echoed, not a decision
        return _Decided(kinds[0])
    present = {kind for kind in kinds if kind is not None}
    if len(present) == 1:
        return _Decided(present.pop())
    if present:
        return ambiguous
    return _Decided(None, AnswerError.INVALID_DECISION, f"The decision {quote(shown)} is neither yes nor no.")


def parse_decision(text: str, *, max_reason_chars: int = DEFAULT_MAX_REASON_CHARS) -> DecisionAnswer:
    """Parse a user-agent answer. Raises only ``TypeError`` for a non-``str`` text."""
    if not isinstance(text, str):
        raise TypeError(f"parse_decision expects str, got {type(text).__name__}")
    try:
        return _parse_decision(text, max_reason_chars)
    except Exception:  # a rollout must survive a parser bug; the code below makes it visible
        logger.exception("parse_decision failed on a %d-character answer", len(text))
        return DecisionAnswer(None, "", "", AnswerError.PARSER_FAILURE, _PARSER_FAILURE_PROBLEM)


def _parse_decision(text: str, max_reason_chars: int) -> DecisionAnswer:
    scan = _scan_labels(text, "decision", max_reason_chars)
    if scan.empty:
        return DecisionAnswer(None, "", "", AnswerError.EMPTY_ANSWER, _empty_problem(text))
    if scan.answer is None:
        return DecisionAnswer(None, "", scan.reason, AnswerError.MISSING_DECISION,
                              "There is no 'Decision:' line; end with 'Decision: yes' or 'Decision: no'.")
    body, decision_labels, value, reason = scan.body, scan.of_kind, scan.value, scan.reason
    decision_text = one_line(strip_decoration(one_line(value)), 80)
    decided = _decide(value)
    if decided.error is not None:
        return DecisionAnswer(None, decision_text, reason, decided.error, decided.problem)
    for label in decision_labels[:-1]:
        earlier = _decide(_label_value(body, label))
        if earlier.decision is not None and earlier.decision != decided.decision:
            problem = "The answer gives more than one decision (both yes and no); give exactly one."
            return DecisionAnswer(None, decision_text, reason, AnswerError.AMBIGUOUS_DECISION, problem)
    return DecisionAnswer(decided.decision, decision_text, reason, None, "")
