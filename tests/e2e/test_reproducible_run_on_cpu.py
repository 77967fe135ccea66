"""Two runs of the default CPU recipe with ``data.seed`` set are the same run: the same sampled
tokens, rewards, advantages and metrics, step by step (before, 68 of 240 non-timing metrics
differed from step 1).

What makes it so (base/cpu.yaml and the trainer): each sampled request is seeded from its
deterministic request id and prompt (``rollout.full_determinism``: the ``coars_dialogue`` loop
names a request by step, dataset row, session and role, and verl routes it by that id), and the
batch reaches verl's balancing in an order that does not depend on arrival (so the same samples
share each update's mini-batch). Timing, throughput and memory figures are the machine's and are
left out of the comparison. The rollout engine's own log-probs (``rollout_corr/*``,
``training/rollout_*``: the sampled tokens' log-probs as the hf engine computed them, against the
trainer's) differ in the 7th digit between runs: the engine decodes concurrent requests together,
and which requests share a batch (so the padded length of its attention) depends on timing. The
sampled tokens do not change with it; those keys are compared to 1e-5.
"""

import json

import pytest

from helpers import run_main_ppo

MACHINE_KEYS = ("timing_s/", "timing_per_token_ms/", "perf/", "memory", "/perf/")
ENGINE_LOG_PROB_KEYS = ("rollout_corr/", "training/rollout_")


def comparable(metrics):
    return [{k: v for k, v in m.items() if not any(part in k for part in MACHINE_KEYS)} for m in metrics]


def rollout_rows(rollouts, step):
    """The dumped samples of a step without their run-specific names (uids are random per run)."""
    rows = [json.loads(line) for line in (rollouts / f"{step}.jsonl").read_text().splitlines()]
    return sorted(json.dumps({k: v for k, v in row.items() if k not in ("key", "uid")}, sort_keys=True) for row in rows)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, primed_model_path, movielens_dir):
    work = tmp_path_factory.mktemp("repro")
    runs = []
    for name in ("a", "b"):
        run = run_main_ppo("cpu_coars_tiny", [
            f"actor_rollout_ref.model.path={primed_model_path}", f"data.train_files={movielens_dir / 'train.parquet'}",
            f"data.val_files={movielens_dir / 'valid.parquet'}", "data.seed=0", f"trainer.rollout_data_dir={work / name / 'rollouts'}",
        ], work / name)
        assert run.returncode == 0, run.log_tail()
        runs.append((run, work / name / "rollouts"))
    return runs


def test_the_rollouts_are_the_same(two_runs):
    (_, first), (_, second) = two_runs
    for step in (1, 2):
        assert rollout_rows(first, step) == rollout_rows(second, step), step


def test_every_metric_but_the_machines_is_the_same(two_runs):
    (first, _), (second, _) = two_runs
    a, b = comparable(first.metrics), comparable(second.metrics)
    assert [m["step"] for m in a] == [m["step"] for m in b] == [1, 2]
    for step_a, step_b in zip(a, b):
        differing = sorted(k for k in set(step_a) | set(step_b) if step_a.get(k) != step_b.get(k))
        exact = [k for k in differing if not k.startswith(ENGINE_LOG_PROB_KEYS)]
        assert not exact, {k: (step_a.get(k), step_b.get(k)) for k in exact[:20]}
        for key in differing:
            assert step_a[key] == pytest.approx(step_b[key], abs=1e-5), key
    assert len(a[0]) > 100  # the comparison covers the run's metrics, not a handful
    for key in ("actor/grad_norm", "actor/entropy", "critic/advantages/mean", "coars/sd/all/delta_mean", "coars/rec/reward_mean"):
        assert key in a[0], key  # among them, exactly equal: the update, the credit, the rewards
