"""The learning benchmark's bookkeeping: resumed training keeps every step's metrics, the table and
the curve read the evaluation results; the runs themselves are in tests/e2e/test_learning_on_cpu.py."""

import json

import pytest
import yaml

from coars_verl.bench import learning
from coars_verl.cpu.launch import TrainingRun


def _metrics_line(step, hit):
    return json.dumps({"step": step, "data": {"coars/dialogue/hit_rate": hit, "timing_s/step": 10.0 + step}}) + "\n"


def test_a_killed_run_resumes_and_keeps_the_metrics_of_both_attempts(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(_metrics_line(1, 0.1) + _metrics_line(2, 0.2))  # the killed attempt
    calls = []

    def fake_run(recipe, overrides, workdir, timeout_s):
        calls.append(overrides)
        (workdir / "train.log").write_text("")
        (workdir / "metrics.jsonl").write_text(_metrics_line(3, 0.3) + _metrics_line(4, 0.4))  # verl truncates its file
        return TrainingRun(0, workdir / "train.log", workdir / "metrics.jsonl", 12.0)

    monkeypatch.setattr(learning, "run_main_ppo", fake_run)
    preset = learning.Preset(steps=4, eval_every=2)
    record = learning.train(preset, tmp_path / "model", tmp_path / "data", run_dir, seed=1, variant="outcome_only")
    assert [row["step"] for row in record["per_step"]] == [1, 2, 3, 4]
    assert [row["coars/dialogue/hit_rate"] for row in record["per_step"]] == [0.1, 0.2, 0.3, 0.4]
    assert "trainer.resume_mode=auto" in calls[0] and "+ablation=outcome_only" in calls[0]
    assert "data.seed=1" in calls[0] and "actor_rollout_ref.rollout.seed=1" in calls[0]
    assert "trainer.save_freq=2" in calls[0]
    # done: a second call reads the record and trains nothing
    assert learning.train(preset, tmp_path / "model", tmp_path / "data", run_dir, seed=1, variant="outcome_only") == record
    assert len(calls) == 1


def test_a_failed_run_stops_the_benchmark_with_its_log(tmp_path, monkeypatch):
    def failing(recipe, overrides, workdir, timeout_s):
        (workdir / "train.log").write_text("Traceback: boom")
        return TrainingRun(1, workdir / "train.log", workdir / "metrics.jsonl", 1.0)

    monkeypatch.setattr(learning, "run_main_ppo", failing)
    with pytest.raises(SystemExit, match="training coars seed 0 failed"):
        learning.train(learning.Preset(steps=2, eval_every=2), tmp_path, tmp_path, tmp_path / "run", 0, "coars")


def _record(variant, seed, hits):
    curve = [{"step": 10 * k, "hit_at_1": h, "user_sim_f1": 0.4} for k, h in enumerate(hits)]
    per_step = [{"step": k + 1, "coars/dialogue/hit_rate": 0.1 * (k // 5) + 0.1 * seed} for k in range(10)]
    return {"variant": variant, "seed": seed, "wall_s": 300.0, "s_per_step": 10.0, "curve": curve, "per_step": per_step}


def test_table_and_curves(tmp_path):
    start = {"step": 0, "hit_at_1": 0.3}
    runs = {"coars": [_record("coars", 0, [0.3, 0.5, 0.8]), _record("coars", 1, [0.3, 0.4, 0.6])],
            "outcome_only": [_record("outcome_only", 0, [0.3, 0.3, 0.4])]}
    table = learning.summarize(runs, start, threshold=0.5)
    assert "| coars | 2 | 30.0 | 70.0 | 60.0-80.0 | 10, 20 | 5 / 15 |" in table  # rollouts: seeds 0.0/0.1, then 0.1/0.2
    assert "| outcome_only | 1 | 30.0 | 40.0 | 40.0-40.0 | never | 0 / 10 |" in table
    learning.plot(runs, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_curve_point_reads_the_evaluation_results():
    metrics = {"recommendation": {"hit_at_1": 0.25, "hit_at_1_turn1": 0.2, "valid_ratio": 0.5}, "user_sim": {"f1_micro": 0.3, "accuracy": 0.6}}
    assert learning.curve_point(7, metrics) == {
        "step": 7, "hit_at_1": 0.25, "hit_at_1_turn1": 0.2, "valid_ratio": 0.5, "user_sim_f1": 0.3, "user_sim_accuracy": 0.6,
    }


def test_every_variant_is_an_ablation_recipe_or_a_valid_reward_setting():
    from coars_verl.rewards.interaction import RewardConfig

    for variant, overrides in learning.VARIANTS.items():
        for override in overrides:
            if override.startswith("+ablation="):
                assert (learning.RECIPES_DIR / "ablation" / f"{override.removeprefix('+ablation=')}.yaml").is_file(), variant
            else:
                key, value = override.removeprefix("coars.reward.").split("=")
                assert override.startswith("coars.reward."), variant
                assert RewardConfig.from_mapping({key: yaml.safe_load(value)}) != RewardConfig(), variant  # as Hydra parses it


def test_the_reczero_variant_trains_its_own_recipe_on_its_own_rows(tmp_path):
    assert (learning.RECIPES_DIR / f"{learning.SINGLE_AGENT_VARIANTS['reczero']}.yaml").is_file()
    overrides = learning._training_overrides(learning.PRESETS["quick"], tmp_path / "m", tmp_path / "d", tmp_path / "r", 0, "reczero")
    assert f"data.train_files={tmp_path / 'd' / 'reczero' / 'train.parquet'}" in overrides
    assert not [o for o in overrides if o.startswith("coars.")]  # no dialogue settings: verl would reject the keys
    dialogue = learning._training_overrides(learning.PRESETS["quick"], tmp_path / "m", tmp_path / "d", tmp_path / "r", 0, "coars")
    assert f"data.train_files={tmp_path / 'd' / 'train.parquet'}" in dialogue and "coars.dialogue.max_turns=3" in dialogue
    assert f"trainer.rollout_data_dir={tmp_path / 'r' / 'rollouts'}" in dialogue  # the credit dump the demo's viewer page shows
