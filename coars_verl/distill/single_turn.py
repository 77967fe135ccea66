"""Teacher contexts for single-turn verl tasks (verl's own agent loops: one sample per prompt and session).

Without a dialogue there is no memory of a user and no hindsight on feedback; what remains is what
any GRPO group has:

* ``sibling`` -- :func:`sibling_context`: the best-scored other answer to the same prompt in this
  step, shown only when it scored strictly higher than the sample (ties: lowest index);
* ``target``  -- :func:`target_context`: the data's ``reward_model.ground_truth`` (leaks the answer;
  what SDPO-style distillation from a reference solution does);
* ``memory``  -- :func:`memory_context`: earlier steps' answers (with their rewards) of samples that
  share a data column's value (``self_distill.memory_key``, e.g. the user id of a single-turn
  recommendation task); without that key there is no memory.

``hindsight`` has nothing to say without a dialogue and is skipped. Pure stdlib.
"""

from __future__ import annotations

from typing import Any, Sequence

from coars_verl.distill.contexts import SOURCE_MEMORY, SOURCE_SIBLING, SOURCE_TARGET, fit_budget

SIBLING_HEADER = "Another answer to this same task earned a higher reward ({reward:.3g} against {own:.3g}). It was:"
TARGET_HEADER = "The reference answer to this task:"
MEMORY_HEADER = "Earlier answers for this {key} and their rewards (most recent first):"
MEMORY_ANSWER_CHARS = 300


def memory_record(response: str, reward: float) -> dict[str, Any]:
    """What the memory keeps of one single-turn sample."""
    return {"answer": response if len(response) <= MEMORY_ANSWER_CHARS else response[: MEMORY_ANSWER_CHARS - 1] + "…", "reward": float(reward)}


def memory_context(records: Sequence[dict[str, Any]], key_name: str, max_chars: int) -> str | None:
    """``records`` (newest first, from ``DialogueMemory.select``) as a teacher context; None without any."""
    if not records:
        return None
    lines = [MEMORY_HEADER.format(key=key_name)] + [f"- reward {float(r['reward']):.3g}: {r['answer']}" for r in records]
    return fit_budget(lines, max_chars)


def best_scored_sibling(scores: Sequence[float], self_index: int) -> int | None:
    """Index of the highest-scored OTHER member of the group, if strictly above ``scores[self_index]``."""
    if not 0 <= self_index < len(scores):
        raise IndexError(f"self_index {self_index} out of range for a group of {len(scores)}")
    others = [j for j in range(len(scores)) if j != self_index]
    if not others:
        return None
    best = max(others, key=lambda j: (float(scores[j]), -j))
    return best if float(scores[best]) > float(scores[self_index]) else None


def sibling_context(responses: Sequence[str], scores: Sequence[float], self_index: int, max_chars: int) -> str | None:
    best = best_scored_sibling(scores, self_index)
    if best is None:
        return None
    header = SIBLING_HEADER.format(reward=float(scores[best]), own=float(scores[self_index]))
    return fit_budget([header, responses[best]], max_chars)


def target_context(ground_truth: Any, max_chars: int) -> str | None:
    if ground_truth is None or str(ground_truth).strip() == "":
        return None
    return fit_budget([TARGET_HEADER, str(ground_truth)], max_chars)


def single_turn_context(sources: Sequence[str], responses: Sequence[str], scores: Sequence[float], self_index: int,
                        ground_truth: Any, max_chars: int, memory_text: str | None = None) -> tuple[str | None, str | None]:
    """(text, source) of the first configured source that has something for this sample, else (None, None).

    Args:
        responses, scores: the decoded answers and rewards of the sample's whole group (same prompt uid).
        self_index: the sample's position in that group.
        ground_truth: the data's ``reward_model.ground_truth`` (target source), or None.
        memory_text: the sample's :func:`memory_context`, or None.
    """
    for source in sources:
        if source == SOURCE_MEMORY:
            text = memory_text
        elif source == SOURCE_SIBLING:
            text = sibling_context(responses, scores, self_index, max_chars)
        elif source == SOURCE_TARGET:
            text = target_context(ground_truth, max_chars)
        else:
            continue  # hindsight and neighbor: dialogue sources
        if text:
            return text, source
    return None, None
