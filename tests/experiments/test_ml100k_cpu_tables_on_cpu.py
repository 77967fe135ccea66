"""The results driver's training summary: what a reader uses to judge whether a short run learned."""

from __future__ import annotations

from coars_verl.experiments.ml100k_cpu import ABLATIONS, RECIPES_ABLATIONS, TrainingJob, training_summary, training_table


def test_every_ablation_recipe_is_run():
    assert set(ABLATIONS) == RECIPES_ABLATIONS


def test_summary_keeps_per_step_series_and_counts_steps_with_a_gradient():
    job = TrainingJob("run", "SmolLM2 + CoARS (3 steps)", "cpu_coars_smollm2", "smollm2", 3, ("+ablation=outcome_only",))
    metrics = [
        {"step": 1, "timing_s/step": 100.0, "actor/grad_norm": 0.0, "coars/rec/reward_mean": -0.5, "coars/rec/valid_ratio": 0.0},
        {"step": 2, "timing_s/step": 80.0, "actor/grad_norm": 1.25, "coars/rec/reward_mean": 0.1, "coars/rec/valid_ratio": 0.5},
        {"step": 3, "timing_s/step": 90.0, "actor/grad_norm": 0.5},
    ]
    summary = training_summary(job, metrics, wall_s=301.04)
    assert summary["grad_norm"] == [0.0, 1.25, 0.5] and summary["rec_reward_mean"] == [-0.5, 0.1]
    assert summary["wall_s"] == 301.0 and summary["steps"] == 3
    row = training_table([summary]).splitlines()[2]
    assert "| 2 / 3 |" in row and "| 90 |" in row and "+ablation=outcome_only" in row and "-0.50, 0.10" in row


def test_a_run_without_metrics_still_renders():
    summary = training_summary(TrainingJob("r", "r", "cpu_coars_tiny", "tiny-primed", 1), [], 10.0)
    assert "| 0 / 0 |" in training_table([summary]) and "nan" in training_table([summary])
