"""End to end: verl's own main_ppo trains the tiny model with GRPO on CPU through our plugin."""

import pandas as pd
import pytest

from helpers import run_main_ppo

TITLES = ["Toy Story", "Heat", "Fargo", "Casino", "Babe", "Se7en", "Clueless", "Jumanji"]


def _write_prompts(path, n):
    rows = [
        {
            "data_source": "coars/synthetic",
            "prompt": [
                {"role": "system", "content": "You recommend movies. Answer with 'Item: <title>'."},
                {"role": "user", "content": f"Candidates: {', '.join(TITLES)}. Recommend one."},
            ],
            "ability": "recommendation",
            "reward_model": {"style": "rule", "ground_truth": TITLES[i % len(TITLES)]},
            "extra_info": {"index": i, "split": path.stem},
        }
        for i in range(n)
    ]
    pd.DataFrame(rows).to_parquet(path)


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, tiny_model_path):
    work = tmp_path_factory.mktemp("grpo")
    _write_prompts(work / "train.parquet", 16)
    _write_prompts(work / "val.parquet", 4)
    run = run_main_ppo(
        "cpu_grpo_tiny",
        [f"actor_rollout_ref.model.path={tiny_model_path}", f"data.train_files={work / 'train.parquet'}", f"data.val_files={work / 'val.parquet'}"],
        work,
    )
    assert run.returncode == 0, run.log_tail()
    return run


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
