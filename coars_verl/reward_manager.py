"""The CoARS interaction reward as a verl reward-loop manager (registered as ``coars_interaction``).

verl calls :meth:`run_single` once per dialogue with one row per agent-loop output (user agent,
then recommender). Both rows carry the same dialogue summary in their ``extra_fields``; the
rewards are the pure functions of :mod:`coars_verl.rewards.interaction`, weighted by
``coars.reward.*``. verl keeps only one ``reward_score`` per run (the final output's, copied to
the others), so both roles' rewards travel in ``reward_extra_info`` (``REC_REWARD_KEY``,
``USER_REWARD_KEY``, ...) and the ``coars_sync`` trainer mode hands each sample its own.

Use in a recipe: ``reward.reward_manager.name=coars_interaction`` with the ``coars_dialogue``
agent loop.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from coars_verl.constants import EXTRA_SUMMARY, REC_REWARD_KEY, REWARD_MANAGER_NAME
from coars_verl.rewards.interaction import compute_role_rewards, reward_config

REWARD_SECONDS_KEY = "coars_reward_s"


def dialogue_summary(data: DataProto) -> Mapping[str, Any]:
    """The dialogue summary the agent loop attached to its outputs (the same on every row)."""
    for extra in data.non_tensor_batch.get("tool_extra_fields", []):
        extra = getattr(extra, "data", extra) or {}
        if EXTRA_SUMMARY in extra:
            return extra[EXTRA_SUMMARY]
    raise ValueError(
        f"{REWARD_MANAGER_NAME}: no '{EXTRA_SUMMARY}' in the agent-loop outputs; this reward manager scores "
        "dialogues of the 'coars_dialogue' agent loop (set agent_name in the data or rollout.agent.default_agent_loop)"
    )


@register(REWARD_MANAGER_NAME)
class CoarsInteractionRewardManager(RewardManagerBase):
    """verl reward manager ``coars_interaction``: both roles' rewards from one dialogue summary.

    Use: ``reward.reward_manager.name=coars_interaction`` (weights under ``coars.reward.*``, e.g.
    ``+coars.reward.beta=1.0``), with the ``coars_dialogue`` agent loop and the ``coars_sync``
    trainer mode, which hands each sample its own role's reward from ``reward_extra_info``.
    """

    def __init__(self, config, tokenizer, compute_score=None, **kwargs):
        super().__init__(config, tokenizer, compute_score)
        self.reward_config = reward_config(config)

    async def run_single(self, data: DataProto) -> dict:
        start = time.perf_counter()
        info = compute_role_rewards(dialogue_summary(data), self.reward_config).as_extra_info()
        info[REWARD_SECONDS_KEY] = time.perf_counter() - start
        # verl keeps the final output's reward_score for the whole run, and the final output is the recommender's
        return {"reward_score": info[REC_REWARD_KEY], "reward_extra_info": info}
