"""The frozen reference model as the self-distillation teacher, through main_ppo on CPU."""

from helpers import run_main_ppo


def test_reference_teacher_scores_the_students_tokens(tmp_path, primed_model_path, movielens_dir):
    run = run_main_ppo(
        "cpu_coars_tiny",
        [
            f"actor_rollout_ref.model.path={primed_model_path}",
            f"data.train_files={movielens_dir / 'train.parquet'}",
            f"data.val_files={movielens_dir / 'valid.parquet'}",
            "trainer.total_training_steps=1",
            "+ablation=teacher_reference",
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.log_tail()
    [step] = run.metrics
    assert "timing_s/ref" in step  # verl built and ran the reference worker
    assert step["coars/sd/context_share"] > 0 and step["coars/sd/prompt_render_mismatch"] == 0
    assert step["coars/sd/all/delta_std"] > 0 and step["actor/grad_norm"] > 0
