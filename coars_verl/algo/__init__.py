"""CoARS advantage math (pure torch, no verl): per-role GRPO and self-distilled token credit.

Its settings: :class:`coars_verl.distill.config.SelfDistillConfig`.
"""

from coars_verl.algo.advantage import (
    apply_self_distill,
    combine,
    combine_additive,
    combine_rlsd,
    delta_stats,
    role_group_outcome_advantage,
    token_delta,
)

__all__ = [
    "apply_self_distill",
    "combine",
    "combine_additive",
    "combine_rlsd",
    "delta_stats",
    "role_group_outcome_advantage",
    "token_delta",
]
