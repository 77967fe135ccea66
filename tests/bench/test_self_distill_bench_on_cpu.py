"""The self-distillation cost benchmark's arithmetic, on hand-made step metrics (step 1 is left out)."""

import json

import pytest

from coars_verl.bench import self_distill as bench
from coars_verl.bench.self_distill import across_rounds, phases, rollouts_match, round_report, summarise


def step(t, teacher=0.5, teacher_tokens=90, student_tokens=100):
    return {"timing_s/step": t, "timing_s/gen": 1.0, "timing_s/old_log_prob": 0.5, "timing_s/coars_teacher": teacher,
            "timing_s/update_actor": 1.5, "coars/sd/teacher_tokens": teacher_tokens, "coars/sd/student_tokens": student_tokens,
            "coars/sd/scored_share": 0.8, "coars/sd/context_share": 0.7, "coars/sd/skipped/outcome_advantage_zero": 0.2,
            "global_seqlen/mean": 900.0, "critic/score/mean": 0.25}


def test_ratios_and_phases():
    metrics = [step(99.0), step(4.0), step(4.0)]  # the first step (compilation, warm-up) does not count
    r = summarise(metrics, step_s_off=3.5)
    assert r["step_s"] == 4.0 and r["step_time_ratio"] == pytest.approx(4.0 / 3.5, abs=1e-3)
    assert r["same_run_step_ratio"] == pytest.approx(4.0 / (4.0 - 0.5), abs=1e-3), "the step against itself without its teacher pass"
    assert r["token_ratio"] == 0.9 and r["teacher_pass_s"] == 0.5 and r["old_log_prob_pass_s"] == 0.5
    assert r["per_token_cost_ratio"] == pytest.approx((1.0 / 180) / (1.0 / 200), abs=1e-3)  # 1.111
    assert r["skipped"] == {"outcome_advantage_zero": 0.2}
    assert phases(metrics) == {"gen": 1.0, "old_log_prob": 0.5, "coars_teacher": 0.5, "update_actor": 1.5, "rest": 0.5}


def test_rounds_report_each_ratio_with_median_and_range():
    """--repeats: each round is reported on its own, and the median and range of its ratios across
    rounds head the report (a mean, or the first round only, fails)."""
    def run(step_s, teacher):
        return [step(99.0, teacher), step(step_s, teacher), step(step_s, teacher)]

    rounds = [round_report({"off": run(3.0, 0.0), "rlsd": run(s, t), "rlsd_tied": run(3.0, 0.1)})
              for s, t in ((3.3, 0.3), (3.9, 0.9), (3.0, 0.0))]
    assert rounds[0]["rlsd"]["step_time_ratio"] == 1.1 and rounds[0]["rlsd"]["teacher_only_step_ratio"] == 1.1
    spread = across_rounds(rounds)
    assert spread["rlsd/step_time_ratio"] == {"median": 1.1, "min": 1.0, "max": 1.3}
    assert spread["rlsd/teacher_only_step_ratio"] == {"median": 1.1, "min": 1.0, "max": 1.3}
    assert spread["rlsd_tied/step_time_ratio"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert "rlsd/per_token_cost_ratio" in spread and spread["rlsd/scored_share"]["median"] == 0.8


def test_rollouts_match_counts_steps_with_equal_tokens_and_score():
    off = [{"global_seqlen/mean": 900.0, "critic/score/mean": 0.25}, {"global_seqlen/mean": 950.0, "critic/score/mean": 0.5}]
    same = [{**m, "critic/score/mean": m["critic/score/mean"] * (1 + 3e-8)} for m in off]  # float32 sums in another order
    other_tokens = [dict(off[0]), {**off[1], "global_seqlen/mean": 951.0}]
    other_score = [{**off[0], "critic/score/mean": 0.26}, dict(off[1])]
    assert rollouts_match(off, same) == 1.0
    assert rollouts_match(off, other_tokens) == 0.5
    assert rollouts_match(off, other_score) == 0.5


@pytest.mark.parametrize("learning", [False, True])
def test_the_runs_hold_the_policy_and_seed_sampling_by_prompt_unless_asked_to_learn(tmp_path, monkeypatch, learning):
    """The step ratio compares runs on the same rollouts: without these overrides the runs diverge
    after the first update (a learning rate left on, or sampling from the shared generator)."""
    launched = []

    class Run:
        returncode = 0
        metrics = [step(3.0), step(3.0)]

    def fake_run(recipe, overrides, workdir):
        launched.append(overrides)
        return Run()

    monkeypatch.setattr(bench, "build_model", lambda kind, folder: folder / kind)
    monkeypatch.setattr(bench, "prepare_movielens", lambda folder: folder)
    monkeypatch.setattr(bench, "run_main_ppo", fake_run)
    assert bench.main(["--steps", "2", "--repeats", "1", "--artifacts", str(tmp_path)] + (["--learning-policy"] if learning else [])) == 0
    assert len(launched) == 3
    for overrides in launched:
        assert ("actor_rollout_ref.actor.optim.lr=0" in overrides) is not learning
        assert ("++actor_rollout_ref.rollout.engine_kwargs.hf.seed_from_prompt=true" in overrides) is not learning
    report = json.loads((tmp_path / "bench" / "self_distill.json").read_text())
    assert report["policy"] == ("learning" if learning else "fixed") and report["rlsd"]["rollouts_match"] == 1.0
