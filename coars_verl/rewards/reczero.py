"""The RecZero-style baseline's reward: the outcome only, with a format penalty (pure; no verl).

RecZero ("Think before Recommendation", 2025) trains one LLM with GRPO on the outcome: it reasons
in tags (``<analyze user>``, ``<match>``), then answers; there is no dialogue and no user agent.
Here the answer is one candidate (``Item: <title>``, read by the dialogue's own parser)::

    score = 1[the named candidate is the target] - format_penalty * 1[format broken]

The format is broken when the answer names no candidate, or the two reasoning blocks are missing,
empty, or out of order (``<analyze user>`` before ``<match>``, both before the item line). verl
calls :func:`compute_score` as ``reward.custom_reward_function`` with
``path=pkg://coars_verl.rewards.reczero`` on rows written by ``data_prep/reczero.py``.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from coars_verl.constants import EI_CANDIDATE_TITLES
from coars_verl.dialogue.parsers import parse_recommendation

REASONING_TAGS = ("analyze user", "match")
DEFAULT_FORMAT_PENALTY = 0.1
_ITEM_LINE = re.compile(r"^\s*item\s*:", re.IGNORECASE | re.MULTILINE)


def reasoning_in_tags(text: str) -> bool:
    """True when every tag of :data:`REASONING_TAGS` encloses some text, in that order, before the item line."""
    item_line = _ITEM_LINE.search(text)
    head = text[: item_line.start()] if item_line else text
    position = 0
    for tag in REASONING_TAGS:
        block = re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL | re.IGNORECASE).search(head, position)
        if block is None or not block.group(1).strip():
            return False
        position = block.end()
    return True


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Optional[dict] = None,
    format_penalty: float = DEFAULT_FORMAT_PENALTY,
    **kwargs: Any,
) -> dict:
    """verl's reward-function signature; ``extra_info`` must hold the sample's candidate titles."""
    candidates = list((extra_info or {}).get(EI_CANDIDATE_TITLES) or [])
    if not candidates:
        raise ValueError(f"{data_source}: reczero reward needs extra_info.{EI_CANDIDATE_TITLES} (write the data with data_prep/reczero.py)")
    text = solution_str or ""
    answer = parse_recommendation(text, candidates)
    valid = answer.error is None
    hit = valid and answer.item_title == str(ground_truth)
    format_ok = valid and reasoning_in_tags(text)
    score = float(hit) - (0.0 if format_ok else float(format_penalty))
    return {"score": score, "hit": float(hit), "valid": float(valid), "format_ok": float(format_ok)}
