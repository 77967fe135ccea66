"""The self-distillation cost benchmark's arithmetic, on hand-made step metrics (step 1 is left out)."""

import pytest

from coars_verl.bench.self_distill import phases, summarise


def step(t, teacher=0.5, teacher_tokens=90, student_tokens=100):
    return {"timing_s/step": t, "timing_s/gen": 1.0, "timing_s/old_log_prob": 0.5, "timing_s/coars_teacher": teacher,
            "timing_s/update_actor": 1.5, "coars/sd/teacher_tokens": teacher_tokens, "coars/sd/student_tokens": student_tokens,
            "coars/sd/scored_share": 0.8, "coars/sd/context_share": 0.7, "coars/sd/skipped/outcome_advantage_zero": 0.2}


def test_ratios_and_phases():
    metrics = [step(99.0), step(4.0), step(4.0)]  # the first step (compilation, warm-up) does not count
    r = summarise(metrics, step_s_off=3.5)
    assert r["step_s"] == 4.0 and r["step_time_ratio"] == pytest.approx(4.0 / 3.5, abs=1e-3)
    assert r["token_ratio"] == 0.9 and r["teacher_pass_s"] == 0.5 and r["old_log_prob_pass_s"] == 0.5
    assert r["per_token_cost_ratio"] == pytest.approx((1.0 / 180) / (1.0 / 200), abs=1e-3)  # 1.111
    assert r["skipped"] == {"outcome_advantage_zero": 0.2}
    assert phases(metrics) == {"gen": 1.0, "old_log_prob": 0.5, "coars_teacher": 0.5, "update_actor": 1.5, "rest": 0.5}
