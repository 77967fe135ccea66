"""Self-distillation with one teacher setting changed, through main_ppo on CPU.

* ``teacher_reference``: the frozen reference model is the teacher (verl must build the ref worker).
* ``teacher_sibling``: the only context source is a sibling dialogue, so only some samples get a
  teacher record, and the teacher batch must be padded to the log-prob micro-batch multiple that
  verl's engine needs without dynamic batch sizes (this run crashed before that padding). It runs
  on the learning task from its cold start, where sampled dialogues hit often enough that some
  samples always have a successful sibling; the test fails when none had one.
"""

from helpers import run_main_ppo

from coars_verl.teacher_records import teacher_batch_shape


def test_the_reference_model_scores_the_students_tokens(tmp_path, primed_model_path, movielens_dir):
    run = run_main_ppo(
        "cpu_coars_tiny",
        [
            f"actor_rollout_ref.model.path={primed_model_path}",
            f"data.train_files={movielens_dir / 'train.parquet'}",
            f"data.val_files={movielens_dir / 'valid.parquet'}",
            "trainer.total_training_steps=1",
            "+ablation=teacher_reference",
            "actor_rollout_ref.actor.use_kl_loss=true",  # no LoRA here: verl's reference worker needs a KL term
            "actor_rollout_ref.actor.kl_loss_coef=0",
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.log_tail()
    [step] = run.metrics
    assert step["coars/sd/prompt_render_mismatch"] == 0 and step["actor/grad_norm"] > 0
    assert "timing_s/ref" in step  # verl built and ran the reference worker
    assert step["coars/sd/context_share"] > 0 and step["coars/sd/all/delta_std"] > 0


def test_sibling_contexts_are_scored_in_a_padded_teacher_batch(tmp_path, learning_task_start):
    data, model = learning_task_start
    run = run_main_ppo(
        "cpu_learning_tiny",
        [
            f"actor_rollout_ref.model.path={model}",
            f"data.train_files={data / 'train.parquet'}",
            f"data.val_files={data / 'valid.parquet'}",
            "trainer.total_training_steps=1",
            "+ablation=teacher_sibling",
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.log_tail()
    [step] = run.metrics
    assert step["coars/sd/prompt_render_mismatch"] == 0 and step["actor/grad_norm"] > 0
    samples = step["coars/rec/samples"] + step["coars/user/samples"]
    with_context = round(step["coars/sd/context_share/sibling"] * samples)
    assert 0 < with_context < samples, step["coars/sd/context_share/sibling"]
    assert step["coars/sd/context_share"] == step["coars/sd/context_share/sibling"]
    # the recipe's log-prob micro-batch is 16: as many micro-batches as that needs, of equal size
    assert step["coars/sd/teacher_padding_records"] == teacher_batch_shape(with_context, dp_size=1, micro_batch_size=16)[0] - with_context
    assert step["coars/sd/all/delta_std"] > 0
