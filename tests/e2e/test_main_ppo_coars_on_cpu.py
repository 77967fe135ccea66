"""End to end: verl's main_ppo trains both CoARS agents on prepared MovieLens, on CPU, with
self-distillation on (the recipe's default), then resumes from the step-2 checkpoint."""

import json
from collections import defaultdict

import numpy as np
import pytest

from helpers import run_main_ppo
from coars_verl.constants import REC_REWARD_KEY, USER_REWARD_KEY


def _overrides(model, data, checkpoints):
    return [
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'valid.parquet'}",
        f"trainer.default_local_dir={checkpoints}",
    ]


@pytest.fixture(scope="module")
def runs(coars_two_step_run, tmp_path_factory, primed_model_path, movielens_dir):
    first, _, checkpoints = coars_two_step_run
    common = _overrides(primed_model_path, movielens_dir, checkpoints)
    resumed = run_main_ppo("cpu_coars_tiny", common + ["trainer.resume_mode=auto", "trainer.total_training_steps=3"],
                           tmp_path_factory.mktemp("coars-resumed"))
    assert resumed.returncode == 0, resumed.log_tail()
    return first, resumed, checkpoints


ROLE_METRICS = ("reward_mean", "response_length_mean", "advantage_abs_mean", "samples")


def training_steps(run):
    """The metrics of training steps (step 0 holds only the validation before training)."""
    return [m for m in run.metrics if m["step"] >= 1]


def test_two_training_steps_finish_then_a_third_after_resuming(runs):
    first, resumed, _ = runs
    assert [m["step"] for m in training_steps(first)] == [1, 2]
    assert [m["step"] for m in training_steps(resumed)] == [3]


def test_per_role_metrics_are_logged(runs):
    for step in training_steps(runs[0]):
        for role in ("rec", "user"):
            for name in ROLE_METRICS:
                assert f"coars/{role}/{name}" in step, (role, name)
        for name in ("coars/dialogue/hit_rate", "coars/dialogue/turns_mean", "coars/rec/valid_ratio", "coars/user/accuracy"):
            assert name in step
        assert 1 <= step["coars/dialogue/turns_mean"] <= 3  # the recipe's max_turns


def test_both_roles_are_trained_with_their_own_advantages(runs):
    metrics = training_steps(runs[0])
    for step in metrics:
        # train_batch_size 4 x n 2 dialogues, one sample per role each
        assert step["coars/rec/samples"] == step["coars/user/samples"] == 8
        assert step["actor/grad_norm"] > 0
    assert any(step["coars/dialogue/role_advantage_gap_mean"] > 0 for step in metrics)
    assert any(step["coars/user/advantage_abs_mean"] > 0 for step in metrics)


def test_rollout_and_trainer_agree_on_log_probs(runs):
    for step in training_steps(runs[0]):
        assert step["training/rollout_probs_diff_max"] < 1e-4, step["training/rollout_probs_diff_max"]


def test_self_distillation_metrics_are_logged(runs):
    for step in training_steps(runs[0]) + training_steps(runs[1]):
        for role in ("recommender", "user", "all"):
            for name in ("delta_mean", "delta_std", "clip_share", "context_share", "tokens"):
                assert f"coars/sd/{role}/{name}" in step, (role, name)
        for source in ("memory", "sibling", "hindsight"):
            assert f"coars/sd/context_share/{source}" in step
        assert step["coars/sd/context_share"] > 0
        assert step["coars/sd/prompt_render_mismatch"] == 0  # every teacher prompt aligned with its student's
        assert step["coars/sd/teacher_tokens"] > 0 and step["timing_s/coars_teacher"] > 0
        assert step["coars/sd/all/tokens"] > 0
    assert any(step["coars/sd/all/delta_std"] > 0 for step in training_steps(runs[0]))  # the teacher disagrees on some tokens


def test_the_dialogue_memory_is_saved_and_restored_on_resume(runs):
    first, resumed, checkpoints = runs
    assert training_steps(first)[0]["coars/sd/memory_records"] == 0  # nothing remembered before step 1
    saved = json.loads((checkpoints / "global_step_2" / "coars_memory.json").read_text())
    assert saved and training_steps(resumed)[0]["coars/sd/memory_records"] > 0
    assert training_steps(resumed)[0]["coars/sd/memory_records"] > training_steps(first)[1]["coars/sd/memory_records"]  # step 2's dialogues too


def test_each_sample_was_trained_on_its_own_roles_reward_and_advantage(runs):
    """Read back after the write-back (``trainer.rollout_data_dir``): each sample's reward is its own
    role's, its prompt is its role's, and the sign of its advantage is that of GRPO over its own
    (prompt, role) group computed here by hand (rlsd reshapes tokens but keeps the sign)."""
    rollouts = runs[0].log_path.parent / "rollouts"
    rows = [json.loads(line) for step in (1, 2) for line in (rollouts / f"{step}.jsonl").read_text().splitlines()]
    real = [row for row in rows if not row["is_padding"]]
    assert len(real) == 2 * 16 and {row["role"] for row in real} == {"recommender", "user"}
    groups = defaultdict(list)
    for row in real:
        own = REC_REWARD_KEY if row["role"] == "recommender" else USER_REWARD_KEY
        assert row["score"] == pytest.approx(row[own], abs=1e-6), row
        assert ("You are a recommender agent" in row["input"]) == (row["role"] == "recommender"), row["input"][:200]
        groups[(row["step"], row["uid"], row["role"])].append(row)
    assert any(row[REC_REWARD_KEY] != row[USER_REWARD_KEY] for row in real)  # the roles' rewards differ somewhere
    signs_checked = 0
    for members in groups.values():
        scores = np.array([m["score"] for m in members])
        if len(members) == 1:
            expected = scores / (1 + 1e-6)
        else:
            expected = (scores - scores.mean()) / (scores.std(ddof=1) + 1e-6)
        for member, outcome in zip(members, expected):
            if member["response_tokens"] == 0 or abs(outcome) < 1e-6:  # a user agent that never acted trains nothing
                assert member["advantage_mean"] == pytest.approx(0.0, abs=1e-6)
            else:
                assert np.sign(member["advantage_mean"]) == np.sign(outcome), (member, outcome)
                signs_checked += 1
    assert signs_checked > 0


def test_validation_runs_before_training_and_at_the_test_frequency(runs):
    """The GPU recipes validate before training and every trainer.test_freq steps; so does this run
    (8 validation dialogues), through the same agent loop and reward manager."""
    by_step = {m["step"]: m for m in runs[0].metrics}
    for step in (0, 2):  # before training, and at test_freq=2
        val = {k: v for k, v in by_step[step].items() if k.startswith("val-")}
        assert any(k.startswith("val-core/") and k.endswith("/reward/mean@1") for k in val), sorted(by_step[step])
        assert any("/hit/mean@1" in k for k in val) and any("/user/reward/mean@1" in k for k in val)
    assert not any(k.startswith("val-") for k in by_step[1])


def test_each_step_makes_the_optimizer_updates_the_recipe_states(runs):
    """base/cpu.yaml: ppo_mini_batch_size counts prompts, and each prompt yields n x 2 samples (both
    roles), so a step makes 2 x train_batch_size / ppo_mini_batch_size = 2 x 4 / 4 = 2 updates."""
    import torch

    optim = torch.load(runs[2] / "global_step_2" / "actor" / "optim_world_size_1_rank_0.pt", weights_only=False)
    steps = {float(state["step"]) for state in optim["state"].values()}
    assert steps == {2 * 2.0}, steps  # 2 training steps x 2 updates
