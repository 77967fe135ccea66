"""The per-sample steps of a CoARS training batch, between verl's rollout and the estimator (pure; no verl).

The ``coars_sync`` trainer mode (:mod:`coars_verl.trainer`) fetches a batch from verl and calls
these in order; each takes plain lists and tensors, so every step is tested on hand-built batches.

Shapes: ``B`` samples (one per dialogue and role), ``R`` padded response length.

Flow::

    reward_infos, weights = batch_reward_infos(roles, reward_infos, real, reward_config)  # batch-level reward terms
    scores = role_scores(roles, reward_infos)                       # (B,) each sample's OWN role's reward
    rm_scores = scores_on_last_token(scores, response_lengths, R)    # (B, R) where verl expects a reward
    delta, has_context = self_distill_delta(teacher_rows, old_log_probs, response_mask)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from coars_verl.algo.advantage import token_delta
from coars_verl.constants import REC_REWARD_KEY, ROLE_RECOMMENDER, ROLE_USER, USER_REWARD_KEY
from coars_verl.rewards.interaction import RewardConfig
from coars_verl.rewards.user_balance import balance_user_rewards

OWN_REWARD_KEY = {ROLE_RECOMMENDER: REC_REWARD_KEY, ROLE_USER: USER_REWARD_KEY}
"""The ``reward_extra_info`` key of the reward each role trains on: its own, never its partner's."""


def batch_reward_infos(
    roles: Sequence[str], reward_infos: Sequence[Mapping[str, float]], real: Sequence[bool], config: RewardConfig
) -> tuple[list[Mapping[str, float]], tuple[float, float] | None]:
    """The reward infos after the terms that need the whole batch (``coars.reward.user_balance``).

    Returns ``(infos, user class weights or None)``; with ``user_balance: none`` (or the outcome
    mode, whose user reward has no accuracy term) the infos are returned as they are.
    """
    if config.mode == "interaction" and config.user_balance == "batch":
        return balance_user_rewards(roles, reward_infos, real, ROLE_USER)
    return list(reward_infos), None


def role_reward(role: str, reward_info: Mapping[str, float]) -> float:
    """The reward ``role`` trains on, from the reward manager's ``reward_extra_info`` of its dialogue."""
    try:
        return float(reward_info[OWN_REWARD_KEY[role]])
    except KeyError as exc:
        raise KeyError(f"no reward for role {role!r} in reward_extra_info keys {sorted(reward_info)}") from exc


def role_scores(roles: Sequence[str], reward_infos: Sequence[Mapping[str, float]]) -> torch.Tensor:
    """``(B,)`` float32: sample i's reward is its own role's reward from its dialogue's reward info.

    Both samples of a dialogue carry the same ``reward_infos`` entry (both roles' rewards); the
    role picks which one trains the sample.
    """
    if len(roles) != len(reward_infos):
        raise ValueError(f"{len(roles)} roles for {len(reward_infos)} reward infos")
    return torch.tensor([role_reward(role, info) for role, info in zip(roles, reward_infos)], dtype=torch.float32)


def scores_on_last_token(scores: torch.Tensor, response_lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``(B, R)``: each scalar score on its sample's last response token, zeros elsewhere.

    Args:
        scores: ``(B,)`` float.
        response_lengths: ``(B,)`` int, tokens in each response (0: the score goes on position 0).
        width: ``R``.
    """
    if scores.shape != response_lengths.shape or scores.dim() != 1:
        raise ValueError(f"scores {tuple(scores.shape)} and response_lengths {tuple(response_lengths.shape)} must be the same (B,)")
    if len(scores) and int(response_lengths.max()) > width:
        raise ValueError(f"a response of {int(response_lengths.max())} tokens does not fit width {width}")
    out = torch.zeros((len(scores), width), dtype=scores.dtype)
    out[torch.arange(len(scores)), (response_lengths.long() - 1).clamp(min=0)] = scores
    return out


def self_distill_delta(
    teacher_rows: Mapping[int, torch.Tensor],
    student_log_probs: torch.Tensor,
    response_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-minus-student log-probs of each sample's own response tokens.

    Args:
        teacher_rows: sample index -> ``(n_i,)`` teacher log-probs of that sample's first ``n_i``
            response tokens (``n_i`` = its response length), for the samples that had a teacher
            context; the others get delta 0.
        student_log_probs: ``(B, R)`` the rollout policy's log-probs (verl's ``old_log_probs``).
        response_mask: ``(B, R)``.

    Returns:
        ``(delta, has_context)``: ``(B, R)`` float32, zero on masked tokens and on samples without
        context; ``(B,)`` bool.
    """
    batch_size, width = response_mask.shape
    teacher = torch.zeros((batch_size, width), dtype=torch.float32)
    has_context = torch.zeros(batch_size, dtype=torch.bool)
    for i, log_probs in teacher_rows.items():
        n = int(log_probs.numel())
        if n > width:
            raise ValueError(f"sample {i}: {n} teacher log-probs for a response width of {width}")
        teacher[i, :n] = log_probs.float()
        has_context[i] = True
    return token_delta(teacher, student_log_probs.float(), response_mask, has_context), has_context
