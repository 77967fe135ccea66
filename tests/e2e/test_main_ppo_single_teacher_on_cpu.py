"""Self-distillation with one teacher setting changed, through main_ppo on CPU.

* ``teacher_reference``: the frozen reference model is the teacher (verl must build the ref worker).
* ``teacher_sibling``: the only context source is a sibling dialogue, so only some samples get a
  teacher record (2 of 16 at the first step in 3 of our 4 runs, none in the other). Without dynamic
  batch sizes verl's engine needs a multiple of the log-prob micro-batch size, so the teacher batch
  must be padded to it; this run crashed before that padding. Whether a sibling context exists
  depends on the sampled dialogues, so a run with none passes without exercising the padding.
"""

import pytest
from helpers import run_main_ppo


@pytest.mark.parametrize("ablation", ["teacher_reference", "teacher_sibling"])
def test_teacher_scores_the_students_tokens(tmp_path, primed_model_path, movielens_dir, ablation):
    run = run_main_ppo(
        "cpu_coars_tiny",
        [
            f"actor_rollout_ref.model.path={primed_model_path}",
            f"data.train_files={movielens_dir / 'train.parquet'}",
            f"data.val_files={movielens_dir / 'valid.parquet'}",
            "trainer.total_training_steps=1",
            f"+ablation={ablation}",
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.log_tail()
    [step] = run.metrics
    assert step["coars/sd/prompt_render_mismatch"] == 0 and step["actor/grad_norm"] > 0
    if ablation == "teacher_reference":
        assert "timing_s/ref" in step  # verl built and ran the reference worker
        assert step["coars/sd/context_share"] > 0 and step["coars/sd/all/delta_std"] > 0
    else:
        assert step["coars/sd/context_share"] < 1
