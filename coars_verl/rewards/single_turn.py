"""A single-turn recommendation reward for plain GRPO (the CPU smoke recipe, and a baseline).

Score 1.0 when the response names the ground-truth item. With ``partial_credit`` (off by
default) a miss scores up to 0.5 for the longest run of the target title's characters found in
the response: a shaped signal, so that even a random model's group has reward variance and GRPO
has something to learn from. verl calls this as ``reward.custom_reward_function`` with
``path=pkg://coars_verl.rewards.single_turn``; ``partial_credit`` comes from
``reward.custom_reward_function.reward_kwargs``.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any, Optional

PARTIAL_CREDIT_CAP = 0.5


def title_overlap(target: str, response: str) -> float:
    """Longest common substring of ``target`` and ``response`` as a share of the target, in [0, 1]."""
    if not target:
        return 0.0
    match = SequenceMatcher(None, target, response, autojunk=False).find_longest_match(0, len(target), 0, len(response))
    return match.size / len(target)


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Optional[dict] = None,
    partial_credit: bool = False,
    **kwargs,
) -> dict:
    target = str(ground_truth or "").strip().lower()
    response = (solution_str or "").lower()
    hit = bool(target) and target in response
    score = 1.0 if hit else (PARTIAL_CREDIT_CAP * title_overlap(target, response) if partial_credit else 0.0)
    return {"score": float(score), "hit": float(hit)}
