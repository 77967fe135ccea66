"""Trainer mode ``coars_sync``: verl's synchronous PPO trainer, with per-role rewards and advantages.

verl 0.9.1 keeps one reward per agent-loop run (the final output's) and its advantage step
fetches a fixed field list. This mode changes only ``_compute_advantage``:

1. fetch each sample's ``extra_fields`` (its role and its dialogue's ``reward_extra_info``);
2. give every sample its own role's reward (``rm_scores`` / ``token_level_rewards``);
3. call the configured estimator (``coars_grpo``) with the roles;
4. write rewards and advantages back, and log per-role metrics under ``coars/*``.

This is also where self-distilled credit plugs in (teacher log-probs per sample).
"""

from __future__ import annotations

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import open_dict
from tensordict import TensorDict
from verl.protocol import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import apply_kl_penalty
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.workers.utils.padding import response_to_nested

from coars_verl.agent_loop import EXTRA_ROLE
from coars_verl.algo.role_metrics import role_advantage_gap, role_metrics, role_reward
from coars_verl.constants import ADV_ESTIMATOR_NAME, TRAINER_MODE_NAME

_FETCHED = ["uid", "response_mask", "rm_scores", "rollout_log_probs", "old_log_probs", "ref_log_prob", "values", "extra_fields"]


@register_trainer(TRAINER_MODE_NAME)
class CoarsPPOTrainer(PPOTrainerSync):
    def __init__(self, config):
        if config.algorithm.adv_estimator != ADV_ESTIMATOR_NAME:
            raise ValueError(
                f"trainer.v1.trainer_mode={TRAINER_MODE_NAME} computes per-role advantages with "
                f"algorithm.adv_estimator={ADV_ESTIMATOR_NAME}; got {config.algorithm.adv_estimator!r}"
            )
        # verl switches behaviour on trainer_mode == "sync" in many places; this is that mode.
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)

    def _compute_advantage(self, batch, metrics: dict):
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=_FETCHED)
        response_mask_nested = data["response_mask"]
        response_lengths = response_mask_nested.offsets().diff()
        extras = [getattr(e, "data", e) for e in data.pop("extra_fields").tolist()]
        data = DataProto(batch=data.to_padded_tensor())
        data.non_tensor_batch["uid"] = np.array(data.batch.pop("uid").tolist(), dtype=object)
        roles = [extra[EXTRA_ROLE] for extra in extras]
        reward_infos = [extra["reward_extra_info"] for extra in extras]

        # 1. each sample gets its own role's reward, on its last response token
        scores = torch.tensor([role_reward(role, info) for role, info in zip(roles, reward_infos)])
        rm_scores = torch.zeros_like(data.batch["rm_scores"])
        rm_scores[torch.arange(len(scores)), (response_lengths - 1).clamp(min=0)] = scores.to(rm_scores.dtype)
        data.batch["rm_scores"] = rm_scores
        data.batch["token_level_scores"] = rm_scores
        if self.config.algorithm.use_kl_in_reward:
            data, kl_metrics = apply_kl_penalty(data, kl_ctrl=self.kl_ctrl_in_reward, kl_penalty=self.config.algorithm.kl_penalty)
            metrics.update(kl_metrics)
        else:
            data.batch["token_level_rewards"] = data.batch["token_level_scores"]

        # 2. rollout correction, as verl's base trainer does it
        rollout_corr_config = self.config.algorithm.get("rollout_correction", None)
        bypass = rollout_corr_config and rollout_corr_config.get("bypass_mode", False)
        rollout_correction = rollout_corr_config is not None and "rollout_log_probs" in data.batch and not bypass
        if rollout_correction:
            data, is_metrics = compute_rollout_correction_and_add_to_batch(data, rollout_corr_config)
            metrics.update(is_metrics)

        # 3. per-role advantages
        estimator = core_algos.get_adv_estimator_fn(self.config.algorithm.adv_estimator)
        advantages, returns = estimator(
            token_level_rewards=data.batch["token_level_rewards"],
            response_mask=data.batch["response_mask"],
            index=data.non_tensor_batch["uid"],
            config=self.config.algorithm,
            roles=roles,
        )
        data.batch["advantages"], data.batch["returns"] = advantages, returns

        real = [not tag.get("is_padding", False) for tag in batch.tags]
        mask = data.batch["response_mask"].float()
        mean_adv = ((advantages * mask).sum(-1) / mask.sum(-1).clamp(min=1)).tolist()
        lengths = mask.sum(-1).tolist()
        keep = [i for i, r in enumerate(real) if r] or list(range(len(roles)))
        metrics.update(
            role_metrics([roles[i] for i in keep], [reward_infos[i] for i in keep], [lengths[i] for i in keep], [mean_adv[i] for i in keep])
        )
        sessions = [batch.keys[i].rsplit("_", 1)[0] for i in keep]  # keys are {uid}_{session}_{output index}
        metrics["coars/dialogue/role_advantage_gap_mean"] = role_advantage_gap(sessions, [roles[i] for i in keep], [mean_adv[i] for i in keep])

        # 4. write back
        fields = ["advantages", "returns", "token_level_rewards", "rm_scores"]
        if rollout_correction:
            fields.append("response_mask")
            if "rollout_is_weights" in data.batch:
                fields.append("rollout_is_weights")
        output = TensorDict({f: response_to_nested(data.batch[f], response_mask_nested) for f in fields}, batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=output)
