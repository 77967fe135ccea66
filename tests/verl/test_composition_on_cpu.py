"""Combinations of CoARS components that cannot train correctly are refused in the driver, with the missing piece named.

Each case here ran to the end without a word before the check (the stock trainer giving the user
agent's samples the recommender's reward, a self-distillation setting silently dropped, a typo).
"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import verl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from coars_verl.composition import CompositionError, check_composition, composition_problems, cpu_problems
from coars_verl.recipes import RECIPES_DIR

VERL_CONFIG = Path(verl.__file__).parent / "trainer" / "config"
RECIPES = RECIPES_DIR
PATHS = ["actor_rollout_ref.model.path=/models/m", "data.train_files=/d/train.parquet", "data.val_files=/d/valid.parquet"]
STOCK_WITH_OUR_LOOP_AND_REWARD = [
    "algorithm.adv_estimator=grpo",
    "actor_rollout_ref.rollout.agent.default_agent_loop=coars_dialogue",
    "reward.reward_manager.source=register",
    "reward.reward_manager.name=coars_interaction",
]

MICRO_BATCHES = [f"actor_rollout_ref.{part}_micro_batch_size_per_gpu=1" for part in ("actor.ppo", "rollout.log_prob", "ref.log_prob")]
"""What verl's own validate_config needs before ours runs."""


def _compose(config_dir, name, overrides=()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def stock(*overrides):
    return _compose(VERL_CONFIG, "ppo_trainer", [*PATHS, *overrides])


def test_a_config_without_coars_is_left_alone():
    assert composition_problems(stock("algorithm.adv_estimator=grpo")) == []


def test_every_recipe_composes_without_a_problem():
    for recipe in ("coars_movielens", "coars_lastfm", "coars_instruments", "cpu_coars_tiny", "cpu_learning_tiny", "cpu_grpo_tiny",
                   "reczero_movielens", "reczero_lastfm", "reczero_instruments", "cpu_reczero_tiny"):
        assert composition_problems(_compose(RECIPES, recipe, PATHS)) == [], recipe


def test_our_dialogue_and_reward_with_the_stock_trainer_are_refused():
    problems = composition_problems(stock(*STOCK_WITH_OUR_LOOP_AND_REWARD))
    text = "\n".join(problems)
    assert "coars_dialogue agent loop returns one sample per role" in text
    assert "coars_interaction reward manager passes both roles' rewards" in text
    assert text.count("trainer.v1.trainer_mode=coars_sync") == 2
    with pytest.raises(CompositionError, match="cannot train correctly"):
        check_composition(stock(*STOCK_WITH_OUR_LOOP_AND_REWARD))


def test_the_agent_loop_named_in_the_data_counts_as_selected(tmp_path):
    pd.DataFrame({"agent_name": ["coars_dialogue"], "prompt": [[{"role": "user", "content": "x"}]]}).to_parquet(tmp_path / "train.parquet")
    cfg = stock("algorithm.adv_estimator=grpo", f"data.train_files={tmp_path / 'train.parquet'}", f"data.val_files={tmp_path / 'train.parquet'}")
    assert any("coars_dialogue agent loop returns one sample per role" in p for p in composition_problems(cfg))


def test_self_distillation_settings_without_our_estimator_are_refused_not_ignored():
    problems = composition_problems(stock("algorithm.adv_estimator=grpo", "+algorithm.coars.self_distill.mode=rlsd"))
    assert any("algorithm.coars.* is read only by algorithm.adv_estimator=coars_grpo" in p and "'grpo'" in p for p in problems)
    bogus = composition_problems(stock("algorithm.adv_estimator=grpo", "+algorithm.coars.bogus_key=1"))
    assert any("algorithm.coars: unknown key(s) ['bogus_key']" in p for p in bogus)


def test_our_estimator_and_trainer_need_each_other():
    estimator_only = composition_problems(stock("algorithm.adv_estimator=coars_grpo"))
    assert any("needs each sample's role" in p for p in estimator_only)
    trainer_only = composition_problems(stock("algorithm.adv_estimator=grpo", "trainer.v1.trainer_mode=coars_sync"))
    assert any("computes per-role advantages with algorithm.adv_estimator=coars_grpo" in p for p in trainer_only)


def test_unknown_and_invalid_coars_keys_are_named():
    problems = composition_problems(_compose(RECIPES, "coars_movielens", [*PATHS, "+coars.dialogue.max_turn=3", "coars.reward.beta=-1",
                                                                          "+coars.rewards.gamma=0.5"]))
    text = "\n".join(problems)
    assert "coars.dialogue: unknown key(s) ['max_turn']" in text
    assert "coars.reward.beta: expected a value >= 0" in text
    assert "coars: unknown key(s) ['rewards']" in text


def test_cpu_settings_that_would_hang_or_fail_are_named():
    cpu_recipe = _compose(RECIPES, "cpu_coars_tiny", PATHS)
    assert cpu_problems(cpu_recipe, machine_cpus=2) == []
    plain = stock("algorithm.adv_estimator=grpo", "actor_rollout_ref.actor.strategy=fsdp", "trainer.n_gpus_per_node=1")
    text = "\n".join(cpu_problems(plain, machine_cpus=2))
    assert "ray_kwargs.ray_init.num_cpus=16" in text and "Ray would see 2 CPUs" in text
    assert "+ray_kwargs.ray_init.num_gpus=1" in text
    assert "actor_rollout_ref.actor.strategy=fsdp2" in text
    assert not any("num_cpus" in p for p in cpu_problems(plain, machine_cpus=64))


def test_main_ppo_stops_in_the_driver_with_our_message(tmp_path):
    """The stock trainer with our dialogue and reward: verl's own main_ppo exits before Ray starts, naming the fix."""
    env = {**os.environ, "VERL_PLATFORM": "cpu", "RAY_ADDRESS": "local"}
    run = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *PATHS, *STOCK_WITH_OUR_LOOP_AND_REWARD, *MICRO_BATCHES],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "CompositionError" in output and "trainer.v1.trainer_mode=coars_sync" in output
    assert "ray_kwargs.ray_init.num_cpus=16" in output  # the CPU checks ran too
    assert "Started a local Ray instance" not in output and "TaskRunner" not in output


def test_single_turn_self_distillation_with_only_dialogue_sources_is_refused(tmp_path):
    pd.DataFrame({"prompt": [[{"role": "user", "content": "2+2?"}]]}).to_parquet(tmp_path / "train.parquet")  # no agent_name
    data = [f"data.train_files={tmp_path / 'train.parquet'}", f"data.val_files={tmp_path / 'train.parquet'}"]
    base = ["algorithm.adv_estimator=coars_grpo", "trainer.v1.trainer_mode=coars_sync", "+algorithm.coars.self_distill.mode=rlsd", *data]
    assert composition_problems(stock(*base)) == []  # default sources include the sibling
    problems = composition_problems(stock(*base, "+algorithm.coars.self_distill.sources=[memory,hindsight]"))
    assert any("without a dialogue" in p and "memory_key" in p for p in problems), problems
    # the memory source has a single-turn builder: with a memory key it composes (the registry says so, not a list here)
    keyed = stock(*base, "+algorithm.coars.self_distill.sources=[memory]", "+algorithm.coars.self_distill.memory_key=user_id")
    assert composition_problems(keyed) == []
    assert composition_problems(stock(*base, "+algorithm.coars.self_distill.sources=[memory]")) != []
