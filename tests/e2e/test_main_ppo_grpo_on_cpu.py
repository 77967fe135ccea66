"""End to end: verl's own main_ppo trains the tiny model with GRPO on CPU through our plugin."""

import pytest

from helpers import run_on_title_prompts


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, tiny_model_path):
    return run_on_title_prompts(tmp_path_factory.mktemp("grpo"), tiny_model_path, 16)


def test_two_training_steps_finish(grpo_run):
    assert [m["step"] for m in grpo_run.metrics] == [1, 2]


def test_the_actor_was_updated(grpo_run):
    # a step whose groups all tie (possible with a random model) has no gradient; one that does not must update
    updated = [step for step in grpo_run.metrics if step["critic/advantages/max"] > 0]
    assert updated, "GRPO never saw reward variance within a group"
    for step in updated:
        assert step["actor/grad_norm"] > 0, step
    assert all(step["actor/lr"] > 0 for step in grpo_run.metrics)


def test_rollout_runs_the_trainers_weights(grpo_run):
    # after step 1 the rollout must serve the updated policy: its log-probs match the trainer's
    for step in grpo_run.metrics:
        assert step["training/rollout_probs_diff_max"] < 1e-4, step
