"""Trainer mode ``coars_sync``: verl's synchronous PPO trainer, with per-role rewards and advantages
and the self-distillation teacher pass.

verl 0.9.1 keeps one reward per agent-loop run (the final output's) and its advantage step
fetches a fixed field list. This mode changes ``_compute_advantage``:

1. fetch each sample's ``extra_fields`` (its role, its dialogue summary and reward info);
2. give every sample its own role's reward (``rm_scores`` / ``token_level_rewards``);
3. call the estimator (``coars_grpo``) with the roles for the outcome advantages;
4. with self-distillation on (``algorithm.coars.self_distill.mode`` rlsd/additive): for the samples
   whose credit the teacher can change (:func:`coars_verl.algo.advantage.teacher_needed`: not a
   tied group under rlsd, not lambda 0), build the teacher context (memory, sibling, hindsight or
   target), run the teacher pass (log-probs of the sample's own response tokens after the
   context-enriched prompt, by the current policy or the reference model, in verl's actor/ref
   workers; skipped when no sample needs it), form delta = teacher - student and call the
   estimator again with it;
5. write rewards and advantages back, remember this step's dialogues, log ``coars/*`` metrics.

With ``trainer.rollout_data_dir`` set, each step's samples are dumped after the write-back with
their role, own reward and mean advantage (:meth:`CoarsPPOTrainer._log_rollout_data`).

The dialogue memory is saved with each checkpoint (``coars_memory.json``) and restored on resume.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import OmegaConf, open_dict
from tensordict import TensorDict
from verl.protocol import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import apply_kl_penalty
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
from verl.trainer.ppo.utils import need_reference_policy
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.workers.utils.padding import response_to_nested

from coars_verl import credit_dump
from coars_verl.algo.advantage import clip_hit_mask, credit_term, delta_stats, teacher_needed
from coars_verl.algo.role_batch import batch_reward_infos, role_scores, scores_on_last_token, self_distill_delta
from coars_verl.algo.role_metrics import role_advantage_gap, role_metrics
from coars_verl.composition import ACTOR_SCORES, REFERENCE_SCORES, check_composition, uses_lora
from coars_verl.constants import (
    EI_HISTORY_ITEM_IDS,
    EXTRA_CORE_SECONDS,
    EXTRA_PROMPT_MESSAGES,
    EXTRA_ROLE,
    EXTRA_SUMMARY,
    REC_REWARD_KEY,
    ROLE_RECOMMENDER,
    ROLE_SINGLE,
    TRAINER_MODE_NAME,
    USER_REWARD_KEY,
)
from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.batch_contexts import StudentSample, batch_teacher_prompts
from coars_verl.distill.config import MODE_OFF, MODE_RLSD, TEACHER_REFERENCE
from coars_verl.distill.contexts import NEEDS_ITEM_HISTORY, NEEDS_MEMORY, teacher_source
from coars_verl.distill.memory import DialogueMemory, compact_record
from coars_verl.distill.sources.memory import answer_record
from coars_verl.estimator import self_distill_config
from coars_verl.reward_manager import REWARD_SECONDS_KEY
from coars_verl.rewards.interaction import reward_config
from coars_verl.teacher_records import RECORD_FIELDS as TEACHER_RECORD_FIELDS
from coars_verl.teacher_records import generation_prompt_ids, scored_log_probs, teacher_batch, teacher_record

logger = logging.getLogger(__name__)

_FETCHED = ["uid", "response_mask", "rm_scores", "rollout_log_probs", "old_log_probs", "ref_log_prob", "values", "extra_fields"]
MEMORY_FILE = "coars_memory.json"
MISMATCH_WARN_SHARE = 0.05
"""Above this share of samples without an aligned teacher prompt, each step warns."""


def reference_teacher_problem(config) -> str | None:
    """Why ``algorithm.coars.self_distill.teacher=reference`` cannot run with ``config``, or None.

    Under LoRA the reference is the actor without its adapter, so no reference worker (and no KL
    term) is needed; without LoRA verl builds the reference worker only when a KL term is on."""
    sd = self_distill_config(config.algorithm)
    if sd.mode == MODE_OFF or sd.teacher != TEACHER_REFERENCE or uses_lora(config) or need_reference_policy(config):
        return None
    return (
        "algorithm.coars.self_distill.teacher=reference without LoRA needs verl's reference model: set "
        "actor_rollout_ref.actor.use_kl_loss=true with actor_rollout_ref.actor.kl_loss_coef=0 (no change to the loss), "
        "or algorithm.use_kl_in_reward=true"
    )


def is_dialogue_batch(extras) -> bool:
    """True when every sample came from the ``coars_dialogue`` agent loop (it tags each with its role),
    False when none did (a verl agent loop's single-turn task); a mix cannot be trained as either."""
    tagged = [EXTRA_ROLE in extra for extra in extras]
    if all(tagged):
        return True
    if not any(tagged):
        return False
    raise ValueError(f"{sum(tagged)} of {len(tagged)} samples come from the coars_dialogue agent loop: a batch must be "
                     "all dialogues or all single-turn samples (check the data's agent_name column)")


def arrival_free_order(keys: list[str], tags: list[dict], row_indices: list) -> list[int]:
    """Positions of a batch's samples sorted by what they are, not by when they arrived: the step their
    prompt was drawn at, their dataset row's ``index``, their session (place in the row's group) and
    output (role) from the key ``{uid}_{session}_{output}``, then their lengths. The uid is random per
    run, so it is not used."""
    def identity(position: int):
        _, session, output = keys[position].rsplit("_", 2)
        tag = tags[position]
        index = row_indices[position]
        row = (0, int(index), "") if isinstance(index, (int, np.integer)) else (1, 0, str(index))
        return (int(tag.get("global_steps", 0) or 0), row, int(session), int(output), int(tag.get("prompt_len", 0)),
                int(tag.get("response_len", 0)))

    return sorted(range(len(keys)), key=identity)


def nested_fields(tensors: dict[str, torch.Tensor], response_mask_nested) -> TensorDict:
    """``(B, R)`` padded tensors -> verl's per-sample nested layout (row i keeps sample i's first
    ``len_i`` tokens, ``len_i`` from ``response_mask_nested``), the form written back to TransferQueue."""
    batch_size = response_mask_nested.size(0)
    return TensorDict({name: response_to_nested(value, response_mask_nested) for name, value in tensors.items()}, batch_size=batch_size)


@register_trainer(TRAINER_MODE_NAME)
class CoarsPPOTrainer(PPOTrainerSync):
    """verl trainer mode ``coars_sync``: verl's synchronous trainer with per-role rewards and
    advantages and the self-distillation teacher pass (module docstring).

    Use: ``trainer.v1.trainer_mode=coars_sync algorithm.adv_estimator=coars_grpo``, with the
    ``coars_dialogue`` agent loop and ``coars_interaction`` reward, or alone on any single-turn verl
    task for self-distilled token credit (``+algorithm.coars.self_distill.mode=rlsd``).
    """

    def __init__(self, config):
        check_composition(config)  # main_ppo ran it in the driver already; this covers other entry points
        self.sd_config = self_distill_config(config.algorithm)
        problem = reference_teacher_problem(config)
        if problem:
            raise ValueError(problem)
        # verl switches behaviour on trainer_mode == "sync" in many places; this is that mode.
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)
        self._sd_off_logged = False
        self.memory = DialogueMemory(max_per_user=self.sd_config.memory_per_user, max_users=self.sd_config.memory_max_users)
        self.reward_config = reward_config(config)
        self.dump_config = credit_dump.DumpConfig.from_mapping(OmegaConf.select(config, "coars.dump", default=None))
        self._credit_samples = self._teacher_contexts = self._credit_settings = None

    def _init_dataloader(self):
        """verl's data loaders, then the lambda schedule for this run: verl counts the run's steps here
        (steps per epoch x epochs, unless ``trainer.total_training_steps`` is set), and
        ``lambda_decay_fraction`` is a share of them. ``init()`` calls this before any step."""
        super()._init_dataloader()
        self.sd_config = self.sd_config.for_run(int(self.total_training_steps))
        if self.sd_config.mode == MODE_RLSD:
            logger.info("coars: rlsd lambda %.3g decays to 0 over %d of the run's %d training steps", self.sd_config.lam0,
                        self.sd_config.lambda_decay_steps, self.total_training_steps)

    def _balance_batch(self, batch, metrics, *args, **kwargs):
        """verl's balancing of the batch over data-parallel ranks, from an order that does not depend on
        when each sample arrived: the replay buffer hands out samples in arrival order, which decides
        verl's tie-breaks here and so which samples share an update's mini-batch; with seeded sampling
        the same job then trains on the same rollouts in the same mini-batches (:func:`arrival_free_order`)."""
        stored = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["index"])
        batch.reorder(arrival_free_order(batch.keys, batch.tags, [getattr(i, "data", i) for i in list(stored["index"])]))
        return super()._balance_batch(batch, metrics, *args, **kwargs)

    # ------------------------------------------------------------------ advantage
    def _compute_advantage(self, batch, metrics: dict):
        """verl 0.9.1's ``PPOTrainerSync._compute_advantage`` with our steps between its own.

        verl's parts (fetch, KL in the reward, rollout correction, write-back) are in the methods
        named ``_verl_*``, copied from that version and watched by a fingerprint of verl's source
        (tests/verl/test_verl_fingerprints_on_cpu.py); ours are the role rewards, the per-role and
        self-distilled advantages, and the metrics and memory."""
        started = time.perf_counter()
        data, extras, response_mask_nested, real = self._verl_fetch(batch)
        dialogue = is_dialogue_batch(extras)
        roles, reward_infos, scores = self._role_rewards(data, extras, real, response_mask_nested.offsets().diff(), dialogue, metrics)
        data, rollout_correction = self._verl_reward_terms(data, metrics)
        item_histories = self._item_histories(batch) if dialogue and self._sources_need(NEEDS_ITEM_HISTORY) else None
        # each real dialogue read once per step: the teacher contexts and the memory use the same transcripts
        transcripts = [Transcript.from_summary(e[EXTRA_SUMMARY]) if r else None for e, r in zip(extras, real)] if dialogue else None
        self._teacher_contexts = None
        outcome, delta, has_context = self._advantages(batch, data, extras, roles, scores, real, transcripts, item_histories, metrics)
        self._credit_samples = self._capture_credit(batch, data, extras, roles, scores, real, outcome, delta)
        self._log_and_remember(batch, data, extras, roles, scores, reward_infos, real, transcripts, item_histories, delta, has_context,
                               metrics)
        metrics["timing_s/coars_advantage"] = time.perf_counter() - started - metrics.get("timing_s/coars_teacher", 0.0)
        return self._verl_write_back(batch, data, response_mask_nested, rollout_correction)

    def _verl_fetch(self, batch):
        """verl's fetch of the advantage step, plus ``extra_fields`` (roles, summaries, reward infos)."""
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=_FETCHED)
        response_mask_nested = data["response_mask"]
        extras = [getattr(e, "data", e) for e in data.pop("extra_fields").tolist()]
        data = DataProto(batch=data.to_padded_tensor())
        data.non_tensor_batch["uid"] = np.array(data.batch.pop("uid").tolist(), dtype=object)
        real = [not tag.get("is_padding", False) for tag in batch.tags]
        return data, extras, response_mask_nested, real

    def _role_rewards(self, data, extras, real, response_lengths, dialogue: bool, metrics: dict):
        """Each sample's own role's reward on its last response token (a single-turn task's samples
        are one role and keep verl's reward). Returns ``(roles, reward_infos, (B,) scores)``."""
        if dialogue:
            roles = [extra[EXTRA_ROLE] for extra in extras]
            reward_infos, weights = batch_reward_infos(roles, [extra["reward_extra_info"] for extra in extras], real, self.reward_config)
            if weights is not None:
                metrics["coars/user/balance_weight_target"], metrics["coars/user/balance_weight_other"] = weights
            scores = role_scores(roles, reward_infos)
            width, dtype = data.batch["rm_scores"].shape[-1], data.batch["rm_scores"].dtype
            data.batch["rm_scores"] = scores_on_last_token(scores, response_lengths, width).to(dtype)
        else:
            roles = [ROLE_SINGLE] * len(extras)
            reward_infos = [extra.get("reward_extra_info", {}) for extra in extras]
            scores = data.batch["rm_scores"].float().sum(-1)
        data.batch["token_level_scores"] = data.batch["rm_scores"]
        return roles, reward_infos, scores

    def _verl_reward_terms(self, data, metrics: dict):
        """verl's KL-in-reward and rollout correction, as its base trainer applies them; returns
        ``(data, whether rollout correction ran)``."""
        if self.config.algorithm.use_kl_in_reward:
            data, kl_metrics = apply_kl_penalty(data, kl_ctrl=self.kl_ctrl_in_reward, kl_penalty=self.config.algorithm.kl_penalty)
            metrics.update(kl_metrics)
        else:
            data.batch["token_level_rewards"] = data.batch["token_level_scores"]
        rollout_corr_config = self.config.algorithm.get("rollout_correction", None)
        bypass = rollout_corr_config and rollout_corr_config.get("bypass_mode", False)
        rollout_correction = rollout_corr_config is not None and "rollout_log_probs" in data.batch and not bypass
        if rollout_correction:
            data, is_metrics = compute_rollout_correction_and_add_to_batch(data, rollout_corr_config)
            metrics.update(is_metrics)
        return data, rollout_correction

    def _advantages(self, batch, data, extras, roles, scores, real, transcripts, item_histories, metrics: dict):
        """Per-role outcome advantages, then, where the teacher can change a sample's credit, the
        teacher pass and the self-distilled advantages; sets ``advantages`` and ``returns``.
        ``transcripts``: each real sample's dialogue (None for a single-turn batch).
        Returns ``(outcome advantages, delta, has_context)`` (delta, has_context None without self-distillation)."""
        estimator = core_algos.get_adv_estimator_fn(self.config.algorithm.adv_estimator)
        step = max(self.global_steps - 1, 0)

        def advantages_with(delta):
            return estimator(token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
                             index=data.non_tensor_batch["uid"], config=self.config.algorithm, roles=roles,
                             self_distill_delta=delta, global_step=step, self_distill=self.sd_config)

        advantages, returns = advantages_with(None)
        outcome, delta, has_context = advantages, None, None
        if self.sd_config.mode != MODE_OFF:
            needed, skipped = teacher_needed(self.sd_config, advantages, data.batch["response_mask"], step)
            wanted = [bool(n) and r for n, r in zip(needed.tolist(), real)]
            n_real = max(sum(real), 1)
            metrics["coars/sd/scored_share"] = sum(wanted) / n_real
            metrics.update({f"coars/sd/skipped/{reason}": 1.0 - sum(wanted) / n_real for reason in skipped})
            metrics["coars/sd/lambda"] = self.sd_config.lam_at(step)
            self._log_switch_off(step)
            # with nothing wanted no teacher prompt is built and the pass is skipped (delta 0: the outcome advantages)
            delta, has_context = self._self_distill_delta(batch, data, extras, roles, scores.tolist(), real, metrics, wanted, transcripts,
                                                          item_histories)
            advantages, returns = advantages_with(delta)
        data.batch["advantages"], data.batch["returns"] = advantages, returns
        return outcome, delta, has_context

    def _log_and_remember(self, batch, data, extras, roles, scores, reward_infos, real, transcripts, item_histories, delta, has_context,
                          metrics: dict) -> None:
        """Per-role and self-distillation metrics over the real samples; this step's dialogues into the memory."""
        keep = [i for i, r in enumerate(real) if r] or list(range(len(roles)))
        advantages = data.batch["advantages"]
        mask = data.batch["response_mask"].float()
        mean_adv = ((advantages * mask).sum(-1) / mask.sum(-1).clamp(min=1)).tolist()
        kept_roles = [roles[i] for i in keep]
        metrics.update(role_metrics(kept_roles, [float(scores[i]) for i in keep], [reward_infos[i] for i in keep],
                                    [mask[i].sum().item() for i in keep], [mean_adv[i] for i in keep]))
        if delta is not None:
            clip_hit = clip_hit_mask(self.sd_config, advantages, delta, data.batch["response_mask"])
            metrics.update(delta_stats(delta[keep], data.batch["response_mask"][keep], kept_roles, clip_hit[keep], has_context[keep], prefix="coars/sd"))
        if transcripts is not None:
            sessions = [batch.keys[i].rsplit("_", 1)[0] for i in keep]  # keys are {uid}_{session}_{output index}
            metrics["coars/dialogue/role_advantage_gap_mean"] = role_advantage_gap(sessions, kept_roles, [mean_adv[i] for i in keep])
            self._remember([transcripts[i] for i in keep], kept_roles, [item_histories[i] for i in keep] if item_histories is not None else None)
            dialogues = [extras[i] for i in keep if roles[i] == ROLE_RECOMMENDER]
            metrics["timing_s/coars_dialogue_core"] = sum(float(e.get(EXTRA_CORE_SECONDS, 0.0)) for e in dialogues)
            metrics["timing_s/coars_reward"] = sum(float(e["reward_extra_info"].get(REWARD_SECONDS_KEY, 0.0)) for e in dialogues)

    def _verl_write_back(self, batch, data, response_mask_nested, rollout_correction: bool):
        """verl's write-back of the advantage step's fields (nested again, by sample key)."""
        fields = ["advantages", "returns", "token_level_rewards", "rm_scores"]
        if rollout_correction:
            fields.append("response_mask")
            if "rollout_is_weights" in data.batch:
                fields.append("rollout_is_weights")
        output = nested_fields({f: data.batch[f] for f in fields}, response_mask_nested)
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=output)

    # ------------------------------------------------------------------ self-distillation
    def _log_switch_off(self, step: int) -> None:
        """Say once when rlsd's lambda reaches 0: from then on the run is per-role GRPO and pays no teacher pass."""
        if self.sd_config.mode == MODE_RLSD and self.sd_config.lam_at(step) == 0.0 and not self._sd_off_logged:
            self._sd_off_logged = True
            logger.warning("coars: self-distillation switches off at step %d (rlsd lambda reached 0 after %d steps); the teacher "
                           "pass is skipped from now on", step + 1, self.sd_config.lambda_decay_steps)

    def _sources_need(self, need: str) -> bool:
        """Whether a configured teacher source reads ``need`` (one of ``distill.contexts.NEEDS``)."""
        return self.sd_config.mode != MODE_OFF and any(need in teacher_source(name).needs for name in self.sd_config.sources)

    def _item_histories(self, batch) -> list[list[str]]:
        """Each sample's user history (item ids, from its dataset row's ``extra_info``), for the sources that read it."""
        stored = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_info"])
        return [list((getattr(e, "data", e) or {}).get(EI_HISTORY_ITEM_IDS) or ()) for e in list(stored["extra_info"])]

    def _student_samples(self, batch, data, extras, roles, own_role_scores, real, wanted, transcripts, item_histories):
        """Each real sample as the teacher pass sees it (None for verl's padding), and the stored fields
        of those that want a teacher (row -> fields, read once here for the teacher records too; None
        when not read). A dialogue sample carries its transcript; a single-turn sample (verl's own agent
        loop) its decoded answer and its dataset row's ground truth and memory key."""
        uids = data.non_tensor_batch["uid"]
        if transcripts is not None:
            wanted_rows = [i for i, w in enumerate(wanted) if w]
            fetched = {}
            if wanted_rows:  # the prompts (alignment check) and the records' fields, for what the teacher may score
                stored = tq.kv_batch_get(keys=[batch.keys[i] for i in wanted_rows], partition_id=batch.partition_id,
                                         select_fields=["prompts", *TEACHER_RECORD_FIELDS])
                fetched = {i: stored[j] for j, i in enumerate(wanted_rows)}
            samples = [
                StudentSample(uid=uids[i], role=roles[i], reward=own_role_scores[i], messages=extras[i][EXTRA_PROMPT_MESSAGES],
                              prompt_ids=fetched[i]["prompts"].tolist() if i in fetched else None, transcript=transcripts[i],
                              memory_key=transcripts[i].user_id, item_history=item_histories[i] if item_histories is not None else None,
                              wanted=wanted[i])
                if real[i] else None
                for i in range(len(real))
            ]
            return samples, fetched
        memory_key = self.sd_config.memory_key
        fields = ["prompts", "responses", "raw_prompt", "reward_model"] + (["extra_info"] if memory_key else [])
        stored = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        rows = zip(stored["prompts"].unbind(), stored["responses"].unbind(), list(stored["raw_prompt"]), list(stored["reward_model"]),
                   list(stored["extra_info"]) if memory_key else [None] * len(real))
        samples = []
        for i, (prompt, response, raw_prompt, reward_model, extra_info) in enumerate(rows):
            if not real[i]:
                samples.append(None)
                continue
            samples.append(StudentSample(
                uid=uids[i], role=ROLE_SINGLE, reward=own_role_scores[i], messages=list(getattr(raw_prompt, "data", raw_prompt)),
                prompt_ids=prompt.tolist(), answer=self.tokenizer.decode(response, skip_special_tokens=True),
                memory_key=(getattr(extra_info, "data", extra_info) or {}).get(memory_key) if memory_key else None,
                ground_truth=(getattr(reward_model, "data", reward_model) or {}).get("ground_truth"), wanted=wanted[i],
            ))
        return samples, None

    def _self_distill_delta(self, batch, data, extras, roles, own_role_scores, real, metrics, wanted, transcripts, item_histories=None):
        """``(B, R)`` delta and ``(B,)`` has-context mask; logs context shares, tokens and time."""
        start = time.perf_counter()
        cfg = self.sd_config
        samples, fetched = self._student_samples(batch, data, extras, roles, own_role_scores, real, wanted, transcripts, item_histories)
        teacher = batch_teacher_prompts(samples, self._render_prompt, cfg, memory=self.memory, step=self.global_steps)
        self._teacher_contexts = teacher  # its sources and texts, for the credit dump
        if transcripts is None and cfg.memory_key:  # after the contexts: this step's answers serve later steps only
            for sample in samples:
                if sample is not None:
                    self.memory.add(sample.memory_key, answer_record(sample.answer, sample.reward), step=self.global_steps)
        metrics["timing_s/coars_teacher_prompts"] = time.perf_counter() - start
        rows = sorted(teacher.prompts)
        teacher_rows, padding = {}, 0
        if rows:
            log_probs, padding = self._teacher_log_probs(batch, rows, [teacher.prompts[i] for i in rows], metrics, fetched)
            teacher_rows = dict(zip(rows, log_probs))
        delta, has_context = self_distill_delta(teacher_rows, data.batch["old_log_probs"], data.batch["response_mask"])
        teacher_tokens = sum(len(teacher.prompts[i]) + batch.tags[i]["response_len"] for i in rows)
        source_counts = teacher.source_counts()

        n_real = max(sum(real), 1)
        if teacher.mismatched > MISMATCH_WARN_SHARE * n_real:
            logger.warning(
                "coars: %d of %d samples got no teacher because their stored prompt is not the rendering of their "
                "messages; check that the tokenizer's chat template and data.apply_chat_template_kwargs are the ones "
                "the agent loop used (coars/sd/prompt_render_mismatch)", teacher.mismatched, n_real,
            )
        student_tokens = sum(tag["seq_len"] for tag, r in zip(batch.tags, real) if r)
        metrics.update({f"coars/sd/context_share/{s}": source_counts.get(s, 0) / n_real for s in cfg.sources})
        metrics.update(
            {
                "coars/sd/context_share": len(rows) / n_real,
                "coars/sd/no_context_samples": float(n_real - len(rows)),
                "coars/sd/prompt_render_mismatch": float(teacher.mismatched),
                "coars/sd/teacher_tokens": float(teacher_tokens),
                "coars/sd/teacher_padding_records": float(padding),
                "coars/sd/student_tokens": float(student_tokens),
                "coars/sd/teacher_token_ratio": teacher_tokens / max(student_tokens, 1),
                "coars/sd/memory_records": float(self.memory.num_records()),
                "timing_s/coars_teacher": time.perf_counter() - start,
            }
        )
        return delta, has_context

    def _render_prompt(self, messages) -> list[int]:
        return generation_prompt_ids(self.tokenizer, messages, self.config.data.get("apply_chat_template_kwargs", None))

    def _teacher_log_probs(self, batch, rows: list[int], prompts: list[list[int]], metrics: dict, fetched=None) -> tuple[list[torch.Tensor], int]:
        """Log-probs of each row's own response tokens after its teacher prompt (verl's workers), and
        the number of padding records the scoring worker's batch shape needed. ``fetched``: row -> its
        stored fields, where the caller read them already. Logs the time of the worker call
        (``timing_s/coars_teacher_forward``) apart from building its input
        (``timing_s/coars_teacher_records``)."""
        start = time.perf_counter()
        if fetched is None:
            stored = tq.kv_batch_get(keys=[batch.keys[i] for i in rows], partition_id=batch.partition_id, select_fields=list(TEACHER_RECORD_FIELDS))
            fetched = {i: stored[j] for j, i in enumerate(rows)}
        records = [teacher_record(fetched[i], prompt) for i, prompt in zip(rows, prompts)]
        options = {"calculate_entropy": False, "compute_loss": False, "temperature": self.config.actor_rollout_ref.rollout.temperature}
        reference = self.sd_config.teacher == TEACHER_REFERENCE
        if reference and self.ref_in_actor:
            options["no_lora_adapter"] = True
        worker_group, worker = self._teacher_scoring_worker()
        scoring, order = teacher_batch(records, self._scoring_dp_size(worker_group, worker.mesh), self._teacher_micro_batch_size(worker),
                                       self.tokenizer.eos_token_id, options)
        forward_start = time.perf_counter()
        metrics["timing_s/coars_teacher_records"] = forward_start - start
        if worker is REFERENCE_SCORES:
            output = worker_group.compute_ref_log_prob(scoring)
        else:
            output = worker_group.compute_log_prob(scoring)
        log_probs = scored_log_probs(output, scoring, order, len(records))
        metrics["timing_s/coars_teacher_forward"] = time.perf_counter() - forward_start
        return log_probs, len(order) - len(records)

    def _teacher_scoring_worker(self):
        """(worker group, :class:`~coars_verl.composition.TeacherScoringWorker`) that scores the teacher records:
        the reference worker group for the reference teacher without LoRA (verl's ``ref_in_actor`` false),
        the actor's otherwise."""
        if self.sd_config.teacher == TEACHER_REFERENCE and not self.ref_in_actor:
            return self.ref_policy_wg, REFERENCE_SCORES
        return self.actor_rollout_wg, ACTOR_SCORES

    @staticmethod
    def _scoring_dp_size(worker_group, mesh: str) -> int:
        """Data-parallel ranks of ``worker_group``'s ``mesh`` (``actor`` or ``ref``: the layout of the worker that
        scores, which for a standalone reference worker need not be the actor's). The teacher records' count
        varies (only samples with a context get one); without dynamic batch sizes verl's engine needs a
        multiple of dp size x log-prob micro-batch size. verl 0.9.1 keeps this in a private dispatch table."""
        if mesh not in worker_group._dispatch_info:
            worker_group._dispatch_info[mesh] = worker_group._query_dispatch_info(mesh)
        return max(worker_group._dispatch_info[mesh]) + 1

    def _teacher_micro_batch_size(self, worker) -> int | None:
        """The configured log-prob micro-batch size of the worker that scores teacher records (None
        with dynamic batch sizes, or when none is set)."""
        dynamic = OmegaConf.select(self.config, worker.dynamic_key, default=False)
        micro = OmegaConf.select(self.config, worker.micro_batch_key, default=None)
        return None if dynamic or not micro else int(micro)

    # ------------------------------------------------------------------ rollout dump
    def _log_rollout_data(self, batch, timing_raw: dict, rollout_data_dir: str):
        """``trainer.rollout_data_dir``: verl's per-step JSONL, read back from TransferQueue after the
        write-back, with each sample's role, its own reward (``score``), its mean advantage and both
        roles' rewards of its dialogue, so what the update trained on can be checked per sample."""
        fields = ["uid", "prompts", "responses", "rm_scores", "advantages", "response_mask", "extra_fields"]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        extras = [getattr(e, "data", e) for e in data.pop("extra_fields").tolist()]
        uids = data.pop("uid").tolist()
        decode = lambda nested: [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in nested.unbind()]  # noqa: E731
        inputs, outputs = decode(data["prompts"]), decode(data["responses"])
        scores = [float(row.sum()) for row in data["rm_scores"].unbind()]
        advantages = [float(a.float().sum() / m.float().sum().clamp(min=1)) for a, m in zip(data["advantages"].unbind(), data["response_mask"].unbind())]
        infos = [extra.get("reward_extra_info", {}) for extra in extras]
        per_sample = {
            "key": list(batch.keys),
            "uid": uids,
            "role": [extra.get(EXTRA_ROLE, ROLE_SINGLE) for extra in extras],
            "advantage_mean": advantages,
            "response_tokens": [int(m.sum()) for m in data["response_mask"].unbind()],
            "is_padding": [bool(tag.get("is_padding", False)) for tag in batch.tags],
            **({name: [float(info[name]) for info in infos] for name in (REC_REWARD_KEY, USER_REWARD_KEY, "hit")} if is_dialogue_batch(extras) else {}),
        }
        self._dump_generations(inputs=inputs, outputs=outputs, gts=[None] * len(inputs), scores=scores,
                               reward_extra_infos_dict=per_sample, dump_path=rollout_data_dir)
        self._write_credit(data["responses"], rollout_data_dir)

    # ------------------------------------------------------------------ credit dump
    def _capture_credit(self, batch, data, extras, roles, scores, real, outcome, delta) -> list[dict] | None:
        """The credit of this step's dumped samples (:mod:`coars_verl.credit_dump`), from the very
        tensors of the update: the outcome advantages, the delta, the final advantages (None when
        nothing is dumped)."""
        if not self.config.trainer.get("rollout_data_dir") or self.dump_config.dialogues_per_step == 0:
            return None
        rows = credit_dump.dumped_rows(list(batch.keys), real, self.dump_config.dialogues_per_step)
        cfg, mask, step = self.sd_config, data.batch["response_mask"], max(self.global_steps - 1, 0)
        term = credit_term(cfg.mode, outcome, delta, mask, eps_w=cfg.eps_w, eta=cfg.eta, clip_c=cfg.clip) if delta is not None else None
        teacher = self._teacher_contexts
        self._credit_settings = {"mode": cfg.mode, "lambda": cfg.lam_at(step) if cfg.mode == MODE_RLSD else None, "eps_w": cfg.eps_w,
                                 "eta": cfg.eta, "clip": cfg.clip}
        return credit_dump.capture_samples(
            rows, list(batch.keys), roles, scores.tolist(), mask, outcome, data.batch["advantages"], delta, term,
            teacher.sources if teacher is not None else {}, teacher.texts if teacher is not None else {},
            [extras[i].get(EXTRA_SUMMARY) for i in range(len(extras))], credit_dump.term_name(cfg.mode),
        )

    def _write_credit(self, responses, rollout_data_dir: str) -> None:
        """``<rollout_data_dir>/credit/step_<N>.json``: the captured samples with their response token
        ids and each token's text (so no reader needs the tokenizer), written atomically."""
        samples, self._credit_samples = self._credit_samples, None
        if samples is None:
            return
        rows = responses.unbind()
        ids = {s["row"]: rows[s["row"]].tolist() for s in samples}
        tokens = {row: [self.tokenizer.decode([t]) for t in row_ids] for row, row_ids in ids.items()}
        payload = credit_dump.step_payload(self.global_steps, self._credit_settings, credit_dump.with_tokens(samples, ids, tokens))
        credit_dump.write_step(rollout_data_dir, payload)

    # ------------------------------------------------------------------ memory
    def _remember(self, transcripts, roles, item_histories=None) -> None:
        """Store this step's dialogues (once each: from the recommender's sample) for later steps, and
        each user's item history where a source reads it."""
        for i, (transcript, role) in enumerate(zip(transcripts, roles)):
            if transcript is not None and role == ROLE_RECOMMENDER:
                self.memory.add(transcript.user_id, compact_record(transcript), step=self.global_steps)
                if item_histories is not None:
                    self.memory.set_item_history(transcript.user_id, item_histories[i])

    def _compute_ref_log_prob(self, batch, metrics):
        if not need_reference_policy(self.config):
            return batch
        return super()._compute_ref_log_prob(batch, metrics)

    def _step_folder(self) -> str:
        if self.config.trainer.resume_mode == "resume_path" and self.config.trainer.resume_from_path:
            folder = self.config.trainer.resume_from_path
        else:
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)

    def _save_checkpoint(self):
        # before verl's save: verl writes latest_checkpointed_iteration.txt last, so a checkpoint
        # that resume can find always has its memory (written atomically)
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        self.memory.save(os.path.join(folder, MEMORY_FILE))
        super()._save_checkpoint()

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps <= 0:
            return
        path = os.path.join(self._step_folder(), MEMORY_FILE)
        if os.path.exists(path):
            self.memory.load(path)
            logger.info("coars: restored the dialogue memory from %s (%d records)", path, self.memory.num_records())
        elif self._sources_need(NEEDS_MEMORY):
            readers = [name for name in self.sd_config.sources if NEEDS_MEMORY in teacher_source(name).needs]
            raise FileNotFoundError(
                f"coars: resuming from {self._step_folder()} without its dialogue memory ({MEMORY_FILE}); the teacher sources "
                f"that read it ({', '.join(readers)}) would silently start empty. Resume from a checkpoint written by coars_sync, "
                "or drop them from algorithm.coars.self_distill.sources"
            )
        else:
            logger.warning("coars: no dialogue memory at %s; the memory source is not used, nothing is lost", path)

