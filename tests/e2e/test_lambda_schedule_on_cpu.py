"""rlsd's lambda follows the run's length when verl computes it (``trainer.total_training_steps``
null, as every GPU recipe has it): the decay is resolved after verl knows the run, not before.

The learning task's cold start samples dialogues that hit often enough that its groups are not all
tied, so the teacher pass has samples to score while lambda is above 0.
"""

import pytest

from coars_verl.distill.config import lambda_schedule
from helpers import run_main_ppo

PROMPTS_PER_STEP = 8  # cpu_learning_tiny's data.train_batch_size
STEPS = 4
FRACTION = 0.5


@pytest.fixture(scope="module")
def run(tmp_path_factory, learning_task_start):
    data, model = learning_task_start
    work = tmp_path_factory.mktemp("lambda")
    overrides = [
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'valid.parquet'}",
        f"data.train_max_samples={PROMPTS_PER_STEP * STEPS}",  # one epoch = 4 steps, which verl counts itself
        "data.seed=0",
        "trainer.total_training_steps=null",
        f"algorithm.coars.self_distill.lambda_decay_fraction={FRACTION}",
    ]
    result = run_main_ppo("cpu_learning_tiny", overrides, work)
    assert result.returncode == 0, result.log_tail()
    return result


def test_lambda_decays_over_the_configured_share_of_the_run_verl_counted(run):
    steps = [m for m in run.metrics if m["step"] >= 1]
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    decay_steps = 2  # ceil(0.5 x 4)
    expected = [lambda_schedule(s - 1, 0.5, decay_steps) for s in (1, 2, 3, 4)]
    assert expected == [0.5, 0.25, 0.0, 0.0]
    assert [m["coars/sd/lambda"] for m in steps] == pytest.approx(expected)


def test_the_teacher_scores_while_lambda_is_above_zero_and_is_skipped_after(run):
    by_step = {m["step"]: m for m in run.metrics}
    for step in (1, 2):
        assert by_step[step]["coars/sd/scored_share"] > 0, by_step[step]
        assert by_step[step]["coars/sd/teacher_tokens"] > 0
    for step in (3, 4):
        assert by_step[step]["coars/sd/scored_share"] == 0
        assert by_step[step]["coars/sd/skipped/teacher_weight_zero"] == 1.0
    assert "self-distillation switches off at step 3" in run.log_path.read_text()
