"""A single teacher-context source through main_ppo on CPU: only some samples get a teacher record.

With the sibling source alone, the number of teacher records is whatever the groups give (2 of 16
at the first step in our runs), and verl's engine, without dynamic batch sizes, needs a multiple of
the log-prob micro-batch size: the teacher batch must be padded to it. This run failed before.
"""

from helpers import run_main_ppo


def test_sibling_teacher_with_an_uneven_teacher_batch(tmp_path, primed_model_path, movielens_dir):
    run = run_main_ppo(
        "cpu_coars_tiny",
        [
            f"actor_rollout_ref.model.path={primed_model_path}",
            f"data.train_files={movielens_dir / 'train.parquet'}",
            f"data.val_files={movielens_dir / 'valid.parquet'}",
            "trainer.total_training_steps=1",
            "+ablation=teacher_sibling",
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.log_tail()
    [step] = run.metrics
    assert 0 < step["coars/sd/context_share"] < 1 and step["coars/sd/prompt_render_mismatch"] == 0
    assert step["actor/grad_norm"] > 0
