"""CoARS advantage math (pure torch, no verl): per-role GRPO and self-distilled token credit."""

from coars_verl.algo.advantage import (
    MODES,
    TEACHERS,
    SelfDistillConfig,
    apply_self_distill,
    combine,
    combine_additive,
    combine_rlsd,
    delta_stats,
    lambda_schedule,
    role_group_outcome_advantage,
    token_delta,
)

__all__ = [
    "MODES",
    "TEACHERS",
    "SelfDistillConfig",
    "apply_self_distill",
    "combine",
    "combine_additive",
    "combine_rlsd",
    "delta_stats",
    "lambda_schedule",
    "role_group_outcome_advantage",
    "token_delta",
]
