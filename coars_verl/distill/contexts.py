"""Teacher contexts h for self-distilled credit assignment (method spec, section 4).

The teacher scores the student's own tokens with the student's context s PLUS a privileged text h.
This module renders h as plain text, to be inserted into the agent's prompt by the caller (e.g. as
an extra message). There is ONE pure function per source; each returns ``str`` or ``None`` when
the source has nothing for this sample:

* ``memory``    -- :func:`memory_context`: past dialogues of the same user from earlier steps;
* ``sibling``   -- :func:`sibling_context`: the best successful dialogue of the same group (same
  prompt uid) in this step, if strictly better than the sample (rule: :func:`best_sibling_index`);
* ``hindsight`` -- :func:`hindsight_context`: this dialogue's feedback and final outcome;
* ``target``    -- :func:`target_context`: the ground-truth item (leaks the answer; ablation only);
* ``neighbor``  -- :func:`neighbor_context`: earlier dialogues of OTHER users whose histories share
  items with this user's (RecNet's preference propagation across related users, as privileged
  context); not in the default order, selected like any source (ablation ``teacher_neighbor``).

:func:`build_teacher_context` tries the configured sources in order and returns the first one that
is available. Every text is cut to ``max_chars`` characters (ending with "…" when cut).

Pure stdlib: no torch, no verl. A dialogue is given as its :class:`~coars_verl.dialogue.transcript.Transcript`
or its stored summary, which only :meth:`Transcript.read` reads.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_USER, check_role
from coars_verl.dialogue.matching import ELLIPSIS, one_line
from coars_verl.dialogue.transcript import Transcript

SOURCE_MEMORY = "memory"
SOURCE_SIBLING = "sibling"
SOURCE_HINDSIGHT = "hindsight"
SOURCE_TARGET = "target"
SOURCE_NEIGHBOR = "neighbor"
SOURCES = (SOURCE_MEMORY, SOURCE_SIBLING, SOURCE_HINDSIGHT, SOURCE_TARGET, SOURCE_NEIGHBOR)
"""All known context sources."""
DEFAULT_SOURCES = (SOURCE_MEMORY, SOURCE_SIBLING, SOURCE_HINDSIGHT)
"""Default fallback order (spec section 4); ``target`` is an ablation and never on by default."""

DEFAULT_MAX_CHARS = 1000
"""A context's character budget (``algorithm.coars.self_distill.context_max_chars``; the one home of the default)."""
DEFAULT_MEMORY_K = 2
MAX_REASON_CHARS = 200
"""A reason shown in a context is cut to this (and a memory record stores no more of it)."""

HEADERS = {
    (SOURCE_MEMORY, ROLE_RECOMMENDER): "Notes from earlier dialogues with this user (most recent first):",
    (SOURCE_MEMORY, ROLE_USER): "Notes from your earlier conversations with the recommender (most recent first):",
    (SOURCE_SIBLING, ROLE_RECOMMENDER): (
        "Another attempt with this same user and the same candidates went better. How it went:"
    ),
    (SOURCE_SIBLING, ROLE_USER): (
        "Another conversation about the same candidates went better. How it went:"
    ),
    (SOURCE_HINDSIGHT, ROLE_RECOMMENDER): (
        "Hindsight on this dialogue (how the user answered each recommendation and how it ended):"
    ),
    (SOURCE_HINDSIGHT, ROLE_USER): (
        "Hindsight on this conversation (every suggestion, your answers and how it ended):"
    ),
    (SOURCE_NEIGHBOR, ROLE_RECOMMENDER): (
        "Earlier dialogues with other users whose histories overlap this user's (most overlap first):"
    ),
    (SOURCE_NEIGHBOR, ROLE_USER): (
        "Earlier conversations of other users whose histories overlap yours (most overlap first):"
    ),
}


# ----------------------------------------------------------------------------- text helpers
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


def _q(title: str | None) -> str:
    return f'"{title}"' if title else "(no valid item)"


def _because(reason: str) -> str:
    reason = one_line(reason, MAX_REASON_CHARS)
    return f" ({reason})" if reason else ""


def _outcome(role: str, accepted: str | None, hit: bool, final_item: str | None, turns: int) -> str:
    """One sentence on how a dialogue ended, phrased for ``role``; never names an unseen target."""
    who, whose = ("you", "you") if role == ROLE_USER else ("the user", "they")
    if accepted:
        if hit:
            return f"{who} accepted {_q(accepted)}, which was the item {whose} wanted"
        return f"{who} accepted {_q(accepted)}, but it was not the item {whose} wanted"
    text = f"no item was accepted in {turns} turn{'s' if turns != 1 else ''}"
    if hit and final_item:
        text += f"; the last suggestion {_q(final_item)} was the item {whose} wanted"
    return text


def _answer_words(answer: str | None) -> str:
    return f"said {answer}" if answer else "gave no valid answer"


def _turn_lines(role: str, transcript: Transcript, include_rec_reason: bool) -> list[str]:
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
            lines.append(f"Turn {r.turn}: you recommended {_q(r.rec_item_title)}{rec_reason}; "
                         f"the user {_answer_words(r.answer)}{user_reason}")
        else:
            lines.append(f"Turn {r.turn}: the recommender suggested {_q(r.rec_item_title)}{rec_reason}; "
                         f"you {_answer_words(r.answer)}{user_reason}")
    return lines


def _outcome_line(role: str, transcript: Transcript) -> str:
    accepted, final = transcript.accepted_turn, transcript.final_turn
    return "Outcome: " + _outcome(role, accepted.rec_item_title if accepted else None, transcript.hit,
                                  final.rec_item_title if final else None, transcript.num_turns) + "."


def _memory_line(role: str, record: Mapping[str, Any]) -> str:
    """One line per memory record (a :func:`coars_verl.distill.memory.compact_record` + ``step``; a
    record's own ``when`` text, if any, replaces "at training step N")."""
    parts = []
    for rej in record.get("rejected") or ():
        if role == ROLE_RECOMMENDER:
            parts.append(f"the user rejected {_q(rej.get('item'))}{_because(rej.get('reason') or '')}")
        else:
            parts.append(f"you rejected {_q(rej.get('item'))}{_because(rej.get('reason') or '')}")
    invalid = int(record.get("invalid_turns") or 0)
    if invalid and role == ROLE_RECOMMENDER:
        parts.append(f"{invalid} turn{'s' if invalid != 1 else ''} lost to invalid answers")
    parts.append(_outcome(role, record.get("accepted"), bool(record.get("hit")), record.get("final_item"),
                          int(record.get("turns") or 0)))
    where = "Dialogue" if role == ROLE_RECOMMENDER else "Conversation"
    when = record.get("when") or f"at training step {record.get('step', '?')}"
    return f"- {where} {when}: " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------- the sources
Dialogue = Transcript | Mapping[str, Any]
"""A dialogue as its transcript or as its stored summary (read by :meth:`Transcript.read`)."""


def memory_context(
    role: str,
    user_id: Any,
    memory: Any,
    k: int = DEFAULT_MEMORY_K,
    before_step: int | None = None,
    max_chars: int | None = DEFAULT_MAX_CHARS,
) -> str | None:
    """Memory source: the ``k`` most recent stored dialogues of ``user_id``, newest first.

    ``memory`` is a :class:`coars_verl.distill.memory.DialogueMemory` (anything with
    ``select(user_id, k, before_step)``) or ``None``. Pass the current step as ``before_step`` so
    that only EARLIER steps count. Returns ``None`` when there is no store or no record.
    """
    check_role(role)
    if memory is None or k <= 0:
        return None
    records = memory.select(user_id, k, before_step=before_step)
    if not records:
        return None
    return fit_budget([HEADERS[SOURCE_MEMORY, role]] + [_memory_line(role, r) for r in records], max_chars)


def _neighbor_line(shared: int, record: Mapping[str, Any]) -> str:
    """One line per neighbour: what that user rejected and why, and how the dialogue ended."""
    parts = [f"that user rejected {_q(rej.get('item'))}{_because(rej.get('reason') or '')}" for rej in record.get("rejected") or ()]
    outcome = _outcome(ROLE_RECOMMENDER, record.get("accepted"), bool(record.get("hit")), record.get("final_item"),
                       int(record.get("turns") or 0))
    parts.append(outcome.replace("the user", "that user", 1))
    return f"- A user sharing {shared} history item{'s' if shared != 1 else ''}: " + "; ".join(parts) + "."


def neighbor_context(
    role: str,
    user_id: Any,
    memory: Any,
    history: Sequence[Any] | None,
    k: int = DEFAULT_MEMORY_K,
    before_step: int | None = None,
    max_chars: int | None = DEFAULT_MAX_CHARS,
) -> str | None:
    """Neighbor source: the most recent stored dialogue of each of the ``k`` other users whose
    histories share the most items with ``history`` (the history item ids of ``user_id``).

    ``memory`` is a :class:`coars_verl.distill.memory.DialogueMemory` (``neighbors`` and ``select``)
    or ``None``. Only records from steps before ``before_step`` count. ``None`` when there is no
    store, no history, or no other user shares an item.
    """
    check_role(role)
    if memory is None or k <= 0 or not history:
        return None
    found = memory.neighbors(user_id, history, k, before_step=before_step)
    if not found:
        return None
    lines = [_neighbor_line(shared, memory.select(uid, 1, before_step=before_step)[0]) for uid, shared in found]
    return fit_budget([HEADERS[SOURCE_NEIGHBOR, role]] + lines, max_chars)


USER_SOURCES = (SOURCE_MEMORY, SOURCE_NEIGHBOR)
"""The sources that need only the user (and the memory), not this dialogue: the evaluation's
Reflexion-style baseline uses them too."""


def user_source_context(role: str, source: str, user_id: Any, memory: Any, history: Sequence[Any] | None, **options: Any) -> str | None:
    """:func:`memory_context` or :func:`neighbor_context` (``source`` one of :data:`USER_SOURCES`);
    ``options`` are theirs (``k``, ``before_step``, ``max_chars``)."""
    if source == SOURCE_MEMORY:
        return memory_context(role, user_id, memory, **options)
    if source == SOURCE_NEIGHBOR:
        return neighbor_context(role, user_id, memory, history, **options)
    raise ValueError(f"{source!r} is not a user source; expected one of {USER_SOURCES}")


def best_sibling_index(group: Sequence[tuple[Dialogue, float]], self_index: int) -> int | None:
    """Index in ``group`` of the sibling to show to sample ``self_index``, or ``None``.

    ``group`` holds ``(dialogue, reward)`` for ALL dialogues of the same prompt uid in this step
    (the sample included), in a fixed order (e.g. rollout index); ``reward`` is the reward of the
    role being trained. Rule: among the OTHER dialogues with a hit, take the one with the highest
    reward (ties: lowest index); return it only if its reward is strictly higher than the sample's
    own reward. Otherwise (no successful sibling, or none strictly better) ``None``.
    """
    if not 0 <= self_index < len(group):
        raise IndexError(f"self_index {self_index} out of range for a group of {len(group)}")
    own_reward = float(group[self_index][1])
    best, best_reward = None, None
    for j, (dialogue, reward) in enumerate(group):
        if j == self_index or not Transcript.read(dialogue).hit:
            continue
        if best_reward is None or float(reward) > best_reward:
            best, best_reward = j, float(reward)
    if best is None or not best_reward > own_reward:
        return None
    return best


def sibling_context(
    role: str,
    dialogue: Dialogue,
    group: Sequence[tuple[Dialogue, float]] | None,
    self_index: int | None,
    max_chars: int | None = DEFAULT_MAX_CHARS,
) -> str | None:
    """Sibling source: the turns and outcome of the best sibling (rule: :func:`best_sibling_index`).

    The sibling is looked up in ``group`` (``(dialogue, reward)`` pairs of the whole group, sample
    included at ``self_index``); ``group[self_index]`` must hold ``dialogue`` itself (checked, to
    catch indexing bugs). ``None`` when there is no group or no eligible sibling.
    """
    check_role(role)
    if not group or self_index is None:
        return None
    if 0 <= self_index < len(group) and group[self_index][0] is not dialogue and group[self_index][0] != dialogue:
        raise ValueError(f"group[{self_index}] is not the sample's own dialogue")
    best = best_sibling_index(group, self_index)
    if best is None:
        return None
    sibling = Transcript.read(group[best][0])
    lines = [HEADERS[SOURCE_SIBLING, role]] + _turn_lines(role, sibling, include_rec_reason=True)
    return fit_budget(lines + [_outcome_line(role, sibling)], max_chars)


def hindsight_context(role: str, dialogue: Dialogue, max_chars: int | None = DEFAULT_MAX_CHARS) -> str | None:
    """Hindsight source: every turn's recommendation and user answer, then the final outcome.

    The ground-truth title is never named (only whether the outcome was right). ``None`` when the
    dialogue has no turns.
    """
    check_role(role)
    transcript = Transcript.read(dialogue)
    if not transcript.turns:
        return None
    lines = [HEADERS[SOURCE_HINDSIGHT, role]] + _turn_lines(role, transcript, include_rec_reason=False)
    return fit_budget(lines + [_outcome_line(role, transcript)], max_chars)


def target_context(role: str, dialogue: Dialogue, max_chars: int | None = DEFAULT_MAX_CHARS) -> str | None:
    """Target source (ablation; leaks the answer): names the ground-truth item. ``None`` if unknown."""
    check_role(role)
    target = Transcript.read(dialogue).target_title
    if not target:
        return None
    if role == ROLE_RECOMMENDER:
        return fit_budget([f"The item this user actually picks next is {_q(target)}."], max_chars)
    return fit_budget([f"The item you actually want next is {_q(target)}."], max_chars)


def build_teacher_context(
    role: str,
    dialogue: Dialogue,
    sources: Sequence[str] = DEFAULT_SOURCES,
    memory: Any = None,
    group: Sequence[tuple[Dialogue, float]] | None = None,
    self_index: int | None = None,
    step: int | None = None,
    memory_k: int = DEFAULT_MEMORY_K,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    history: Sequence[Any] | None = None,
) -> tuple[str | None, str | None]:
    """Teacher context h for one (dialogue, role) sample: the first available source in ``sources``.

    Args:
        role: ``"recommender"`` or ``"user"``.
        dialogue: this sample's dialogue (transcript or stored summary).
        sources: source names, tried in order (subset of :data:`SOURCES`; unknown -> ValueError).
        memory: a ``DialogueMemory`` or ``None`` (memory and neighbor sources).
        group, self_index: ``(dialogue, role reward)`` of every dialogue of the same prompt uid this
            step, and the sample's position in it (sibling source).
        step: current training step; memory records from this step or later are ignored.
        memory_k: past dialogues (memory) or other users (neighbor) shown.
        max_chars: character budget of the returned text (``None``: unlimited).
        history: the sample's user's history item ids (neighbor source).

    Returns:
        ``(text, source_name)``, or ``(None, None)`` if no source has anything (then delta = 0).
    """
    check_role(role)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown teacher-context source(s) {unknown}; expected some of {SOURCES}")
    transcript = Transcript.read(dialogue)
    for source in sources:
        if source in USER_SOURCES:
            text = user_source_context(role, source, transcript.user_id, memory, history, k=memory_k, before_step=step, max_chars=max_chars)
        elif source == SOURCE_SIBLING:
            text = sibling_context(role, dialogue, group, self_index, max_chars=max_chars)
        elif source == SOURCE_HINDSIGHT:
            text = hindsight_context(role, transcript, max_chars=max_chars)
        else:
            text = target_context(role, transcript, max_chars=max_chars)
        if text:
            return text, source
    return None, None
