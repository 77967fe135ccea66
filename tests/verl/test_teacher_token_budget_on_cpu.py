"""With dynamic batch sizes a token budget below the longest teacher record is refused in the driver.

verl asserts ``max_token_len >= the longest sequence`` in each micro-batch (verl/utils/seqlen_balancing.py),
and a teacher record is the student's sequence plus its context: a budget tuned to prompt + response
(3584 tokens in coars_lastfm) let the run start and crashed the teacher pass at the first full-length
sample with a context. The message names the key of the worker that scores the teacher and the minimum."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from coars_verl.composition import CompositionError, composition_problems, teacher_context_token_bound
from coars_verl.plugin import checked_config
from coars_verl.recipes import RECIPES_DIR

ACTOR_KEY = "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu"
REF_KEY = "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu"
# coars_lastfm: 2048 prompt + 1536 response tokens, teacher contexts of at most 1000 characters
MINIMUM = 2048 + 1536 + teacher_context_token_bound(1000)
DYNAMIC = ["actor_rollout_ref.actor.use_dynamic_bsz=true", "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true"]
REFERENCE_WITHOUT_LORA = ["+ablation=teacher_reference", "actor_rollout_ref.model.lora_rank=0", "actor_rollout_ref.actor.use_kl_loss=true",
                          "actor_rollout_ref.actor.kl_loss_coef=0", "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true"]


def _lastfm(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(RECIPES_DIR), version_base=None):
        return compose(config_name="coars_lastfm", overrides=list(overrides))


def _budget_problems(cfg):
    return [p for p in composition_problems(cfg) if "teacher record" in p]


def test_the_bound_counts_the_context_characters_and_the_template():
    assert teacher_context_token_bound(1000) > 1000 and teacher_context_token_bound(2000) - teacher_context_token_bound(1000) >= 1000


def test_a_budget_of_prompt_plus_response_is_refused_in_the_driver_naming_the_key_and_the_minimum():
    cfg = _lastfm(*DYNAMIC, f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={2048 + 1536}")  # the log-prob key follows it
    [problem] = _budget_problems(cfg)
    assert f"{ACTOR_KEY}=3584" in problem and f"set {ACTOR_KEY}={MINIMUM}" in problem
    assert "context_max_chars 1000" in problem and "actor_rollout_ref.actor.use_dynamic_bsz=true" in problem
    with pytest.raises(CompositionError, match="below the longest teacher record"):
        checked_config(lambda config, *args, **kwargs: None)(cfg)  # what main_ppo calls in the driver


def test_the_minimum_passes_and_so_does_a_run_without_a_teacher_pass_or_without_dynamic_batches():
    assert _budget_problems(_lastfm(*DYNAMIC, f"{ACTOR_KEY}={MINIMUM}")) == []
    assert _budget_problems(_lastfm(*DYNAMIC, f"{ACTOR_KEY}={MINIMUM - 1}")) != []
    shorter_contexts = f"{ACTOR_KEY}={3584 + teacher_context_token_bound(400)}"
    assert _budget_problems(_lastfm(*DYNAMIC, shorter_contexts, "algorithm.coars.self_distill.context_max_chars=400")) == []
    assert _budget_problems(_lastfm(*DYNAMIC, shorter_contexts)) != []
    assert _budget_problems(_lastfm(*DYNAMIC, f"{ACTOR_KEY}=3584", "+ablation=no_self_distill")) == []
    assert _budget_problems(_lastfm(f"{ACTOR_KEY}=3584")) == []  # fixed micro-batches: verl reads no token budget


def test_the_reference_teacher_without_lora_is_checked_on_the_reference_workers_key():
    cfg = _lastfm(*REFERENCE_WITHOUT_LORA, f"{REF_KEY}=3584", f"{ACTOR_KEY}=100000")
    [problem] = _budget_problems(cfg)
    assert problem.startswith(f"{REF_KEY}=3584") and "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true" in problem
    assert _budget_problems(_lastfm(*REFERENCE_WITHOUT_LORA, f"{REF_KEY}={MINIMUM}", f"{ACTOR_KEY}=3584")) == []
    # under LoRA the reference is the actor without its adapter: the actor's key applies
    [problem] = _budget_problems(_lastfm(*DYNAMIC, "+ablation=teacher_reference", f"{ACTOR_KEY}=3584", f"{REF_KEY}=100000"))
    assert problem.startswith(f"{ACTOR_KEY}=3584")
