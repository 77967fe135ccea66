"""The self-distillation cost benchmark's arithmetic, on hand-made step metrics (step 1 is left out)."""

import json

import pytest

from coars_verl.bench import self_distill as bench
from coars_verl.bench.self_distill import bench_report, phases, rollouts_match, run_order, summarise, timed


def step(t, teacher=0.5, teacher_tokens=90, student_tokens=100):
    return {"timing_s/step": t, "timing_s/gen": 1.0, "timing_s/old_log_prob": 0.5, "timing_s/coars_teacher": teacher,
            "timing_s/update_actor": 1.5, "coars/sd/teacher_tokens": teacher_tokens, "coars/sd/student_tokens": student_tokens,
            "coars/sd/scored_share": 0.8, "coars/sd/context_share": 0.7, "coars/sd/skipped/outcome_advantage_zero": 0.2,
            "global_seqlen/mean": 900.0, "critic/score/mean": 0.25}


def test_ratios_and_phases():
    metrics = [step(99.0), step(4.0), step(4.0)]
    assert timed(metrics) == metrics[1:], "the first step (compilation, warm-up) does not count"
    assert timed(metrics[:1]) == metrics[:1], "unless it is the only one"
    r = summarise(timed(metrics), step_s_off=3.5)
    assert r["step_s"] == 4.0 and r["step_time_ratio"] == pytest.approx(4.0 / 3.5, abs=1e-3)
    assert r["same_run_step_ratio"] == pytest.approx(4.0 / (4.0 - 0.5), abs=1e-3), "the step against itself without its teacher pass"
    assert r["token_ratio"] == 0.9 and r["teacher_pass_s"] == 0.5 and r["old_log_prob_pass_s"] == 0.5
    assert r["per_token_cost_ratio"] == pytest.approx((1.0 / 180) / (1.0 / 200), abs=1e-3)  # 1.111
    assert r["skipped"] == {"outcome_advantage_zero": 0.2}
    assert phases(timed(metrics)) == {"gen": 1.0, "old_log_prob": 0.5, "coars_teacher": 0.5, "update_actor": 1.5, "rest": 0.5}


def test_run_order_alternates_the_modes_round_by_round():
    """A drift of the machine's speed must weigh on both modes alike: off first in one round, rlsd
    first in the next (always off first fails); the tied run once."""
    assert run_order(1) == [("off", 0), ("rlsd", 0), ("rlsd_tied", 0)]
    assert run_order(2) == [("off", 0), ("rlsd", 0), ("rlsd_tied", 0), ("rlsd", 1), ("off", 1)]
    assert run_order(3)[-2:] == [("off", 2), ("rlsd", 2)]


def test_report_pools_each_modes_timed_steps_and_gives_the_rounds_and_the_noise():
    """The step ratio pools every run of a mode (the first round alone, or a ratio of ratios, gives
    another figure), leaves each run's first step out, and the off runs' spread is reported."""
    def run(step_s, teacher):
        return [step(99.0, teacher), step(step_s, teacher), step(step_s, teacher)]

    runs = [("off", 0, run(3.0, 0.0)), ("rlsd", 0, run(3.3, 0.4)), ("rlsd_tied", 0, run(3.1, 0.0)),
            ("rlsd", 1, run(3.9, 0.4)), ("off", 1, run(3.6, 0.0))]
    report = bench_report(runs)
    assert report["order"] == ["off_0", "rlsd_0", "rlsd_tied_0", "rlsd_1", "off_1"]
    assert report["step_s_off"] == 3.3 and report["rlsd"]["step_s"] == 3.6
    assert report["rlsd"]["step_time_ratio"] == pytest.approx(3.6 / 3.3, abs=1e-3)
    assert report["rlsd"]["same_run_step_ratio"] == pytest.approx(3.6 / 3.2, abs=1e-3)
    assert report["rlsd"]["teacher_only_step_ratio"] == pytest.approx(3.7 / 3.3, abs=1e-3)
    assert report["rlsd_tied"]["step_time_ratio"] == pytest.approx(3.1 / 3.3, abs=1e-3)
    assert report["noise"] == {"off_runs_step_s": [3.0, 3.6], "off_spread": 1.2}
    assert [(r["order"], r["step_time_ratio"]) for r in report["rounds"]] == [(["off", "rlsd", "rlsd_tied"], 1.1), (["rlsd", "off"], 1.083)]
    assert report["rlsd"]["rollouts_match"] == 1.0
    assert report["phases_s"]["off"]["rest"] == pytest.approx(3.3 - 3.0, abs=1e-3)


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
    assert bench.main(["--steps", "2", "--artifacts", str(tmp_path)] + (["--learning-policy"] if learning else [])) == 0
    modes = [[o.split("=", 1)[1] for o in overrides if o.startswith(("algorithm.coars.self_distill.mode=", "coars.reward.mode="))]
             for overrides in launched]
    assert modes == [["off"], ["rlsd"], ["rlsd", "outcome"], ["rlsd"], ["off"]], "two rounds by default, the second in reverse"
    for overrides in launched:
        assert ("actor_rollout_ref.actor.optim.lr=0" in overrides) is not learning
        assert ("++actor_rollout_ref.rollout.engine_kwargs.hf.seed_from_prompt=true" in overrides) is not learning
    report = json.loads((tmp_path / "bench" / "self_distill.json").read_text())
    assert report["policy"] == ("learning" if learning else "fixed") and report["rlsd"]["rollouts_match"] == 1.0
