"""The CoARS advantage estimator, registered in verl as ``coars_grpo``.

GRPO over groups (prompt uid, role): the recommender's samples are compared with the
recommender's, the user agent's with the user agent's. With self-distillation on, the teacher's
token-level signal ``delta`` then shapes each token's advantage (modes ``rlsd``, ``additive``;
``off`` is plain per-role GRPO), configured under ``algorithm.coars.self_distill``.

verl's stock trainer passes only ``token_level_rewards, response_mask, index, config``; the roles
and ``delta`` come from the ``coars_sync`` trainer mode (:mod:`coars_verl.trainer`), which is
therefore required. With verl's own agent loops every sample has the one role ``single``, so the
groups are GRPO's and the teacher's delta adds token credit to a plain single-turn task.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import register_adv_est

from coars_verl.algo.advantage import apply_self_distill, role_group_outcome_advantage
from coars_verl.constants import ADV_ESTIMATOR_NAME, TRAINER_MODE_NAME
from coars_verl.distill.config import SelfDistillConfig


def self_distill_config(algorithm_config) -> SelfDistillConfig:
    """``algorithm.coars.self_distill`` of verl's algorithm config (a DictConfig or a dict)."""
    if algorithm_config is None:
        return SelfDistillConfig()
    section = OmegaConf.select(OmegaConf.create(algorithm_config) if isinstance(algorithm_config, dict) else algorithm_config,
                               "coars.self_distill", default=None)
    return SelfDistillConfig.from_mapping(section)


@register_adv_est(ADV_ESTIMATOR_NAME)
def compute_coars_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index=None,
    config=None,
    roles: Optional[Sequence[str]] = None,
    self_distill_delta: Optional[torch.Tensor] = None,
    global_step: int = 0,
    epsilon: float = 1e-6,
    self_distill: Optional[SelfDistillConfig] = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-role group advantages, optionally with self-distilled token credit.

    Args:
        token_level_rewards: ``(B, R)`` float; each sample's own-role reward (summed over tokens).
        response_mask: ``(B, R)`` 1 on the sample's generated tokens.
        index: ``B`` prompt uids (all sessions and both roles of a prompt share one).
        config: verl's ``algorithm`` config (``norm_adv_by_std_in_grpo``, ``coars.self_distill``).
        roles: ``B`` role names, one per sample.
        self_distill_delta: ``(B, R)`` float teacher-minus-student log-probs of the sampled tokens,
            zero where a sample had no teacher context; None: outcome advantages only.
        global_step: training steps done so far (the lambda schedule of ``rlsd``).
        self_distill: the settings to apply (the trainer passes them with the run's lambda schedule
            resolved); None: read from ``config.coars.self_distill``.

    Returns:
        ``(advantages, returns)``, both ``(B, R)``, zero on masked positions.
    """
    if roles is None:
        raise ValueError(
            f"{ADV_ESTIMATOR_NAME} needs each sample's role, which verl's stock trainer does not pass: "
            f"set trainer.v1.trainer_mode={TRAINER_MODE_NAME}"
        )
    if index is None:
        raise ValueError(f"{ADV_ESTIMATOR_NAME} needs the prompt uids (index)")
    norm_by_std = True if config is None else bool(config.get("norm_adv_by_std_in_grpo", True))
    scores = token_level_rewards.sum(dim=-1)
    advantages, returns = role_group_outcome_advantage(scores, response_mask, list(zip(index, roles)), norm_by_std=norm_by_std, epsilon=epsilon)
    if self_distill_delta is not None:
        cfg = self_distill if self_distill is not None else self_distill_config(config)
        advantages = apply_self_distill(cfg, advantages, self_distill_delta, response_mask, global_step)
        returns = advantages.clone()
    return advantages, returns
