"""The CoARS advantage estimator, registered in verl as ``coars_grpo``.

GRPO over groups (prompt uid, role): the recommender's samples are compared with the
recommender's, the user agent's with the user agent's. verl's stock trainer passes only
``token_level_rewards, response_mask, index, config``; the role of each sample comes from the
``coars_sync`` trainer mode (:mod:`coars_verl.trainer`), which is therefore required.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from verl.trainer.ppo.core_algos import register_adv_est

from coars_verl.algo.advantage import role_group_outcome_advantage
from coars_verl.constants import ADV_ESTIMATOR_NAME, TRAINER_MODE_NAME


@register_adv_est(ADV_ESTIMATOR_NAME)
def compute_coars_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index=None,
    config=None,
    roles: Optional[Sequence[str]] = None,
    epsilon: float = 1e-6,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-role group advantages.

    Args:
        token_level_rewards: ``(B, R)`` float; each sample's own-role reward (summed over tokens).
        response_mask: ``(B, R)`` 1 on the sample's generated tokens.
        index: ``B`` prompt uids (all sessions and both roles of a prompt share one).
        config: verl's ``algorithm`` config (``norm_adv_by_std_in_grpo``).
        roles: ``B`` role names, one per sample.

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
    return role_group_outcome_advantage(scores, response_mask, list(zip(index, roles)), norm_by_std=norm_by_std, epsilon=epsilon)
