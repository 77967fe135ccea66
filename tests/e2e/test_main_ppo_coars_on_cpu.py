"""End to end: verl's main_ppo trains both CoARS agents on prepared MovieLens, on CPU."""

import pytest

from helpers import run_main_ppo


@pytest.fixture(scope="module")
def coars_run(tmp_path_factory, primed_model_path, movielens_dir):
    work = tmp_path_factory.mktemp("coars")
    run = run_main_ppo(
        "cpu_coars_tiny",
        [
            f"actor_rollout_ref.model.path={primed_model_path}",
            f"data.train_files={movielens_dir / 'train.parquet'}",
            f"data.val_files={movielens_dir / 'valid.parquet'}",
        ],
        work,
    )
    assert run.returncode == 0, run.log_tail()
    return run


ROLE_METRICS = ("reward_mean", "response_length_mean", "advantage_abs_mean", "samples")


def test_two_training_steps_finish(coars_run):
    assert [m["step"] for m in coars_run.metrics] == [1, 2]


def test_per_role_metrics_are_logged(coars_run):
    for step in coars_run.metrics:
        for role in ("rec", "user"):
            for name in ROLE_METRICS:
                assert f"coars/{role}/{name}" in step, (role, name)
        for name in ("coars/dialogue/hit_rate", "coars/dialogue/turns_mean", "coars/rec/valid_ratio", "coars/user/accuracy"):
            assert name in step
        assert 1 <= step["coars/dialogue/turns_mean"] <= 3  # the recipe's max_turns


def test_both_roles_are_trained_with_their_own_advantages(coars_run):
    for step in coars_run.metrics:
        # train_batch_size 4 x n 2 dialogues, one sample per role each
        assert step["coars/rec/samples"] == step["coars/user/samples"] == 8
    assert any(step["coars/dialogue/role_advantage_gap_mean"] > 0 for step in coars_run.metrics)
    assert any(step["coars/user/advantage_abs_mean"] > 0 for step in coars_run.metrics)
    assert all(step["actor/grad_norm"] > 0 for step in coars_run.metrics)


def test_rollout_and_trainer_agree_on_log_probs(coars_run):
    for step in coars_run.metrics:
        assert step["training/rollout_probs_diff_max"] < 1e-4, step["training/rollout_probs_diff_max"]
