"""The GPU recipes as their users run them, on CPU: ``coars_movielens`` and ``reczero_movielens``
through verl's main_ppo with the one override set ``+machine=cpu_smoke`` (recipes/machine/cpu_smoke.yaml:
machine settings only) and the recipes' own model and data keys (COARS_MODEL_PATH, COARS_DATA_DIR).

What the recipe configures is checked per step: ``trainer.total_training_steps`` is null, so verl
counts the run and rlsd's lambda decays over the recipe's share of it; the teacher pass runs while
lambda is above 0 with the recipe's sources (memory from the second step: the slice holds one
user); validation runs before training and at the end; the last step writes a checkpoint with its
dialogue memory, and a resumed run (one more epoch) continues from it. The data is a slice of what
data_prep writes for the recipe (ml-100k from the recbole package, the recipe's protocol).
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from coars_verl.distill.config import lambda_schedule
from helpers import run_main_ppo

REPO = Path(__file__).resolve().parents[2]
OVERRIDE = "+machine=cpu_smoke"
PROMPTS_PER_STEP = 2  # cpu_smoke: data.train_batch_size
ROWS = 6  # cpu_smoke: data.train_max_samples


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, movielens_dir):
    """COARS_DATA_DIR for the recipes: movielens-100k/ with the windows of one train user (so the
    memory source has that user's dialogues from step 2), and its reczero/ rows."""
    root = tmp_path_factory.mktemp("coars-data")
    out = root / "movielens-100k"
    out.mkdir()
    train = pd.read_parquet(movielens_dir / "train.parquet")
    users = train["extra_info"].map(lambda e: e["user_id"])
    user = users.value_counts().index[0]
    train[users == user].head(ROWS).to_parquet(out / "train.parquet")
    for split in ("valid", "test"):
        pd.read_parquet(movielens_dir / f"{split}.parquet").head(8).to_parquet(out / f"{split}.parquet")
    subprocess.run([sys.executable, str(REPO / "data_prep" / "reczero.py"), "--data", str(out)], check=True)  # the recipe's own data_prep step
    return root


def run_recipe(recipe, work, model, data_dir, *extra, name="first"):
    """main_ppo on ``recipe`` with only the override set; its log and metrics in ``work/<recipe>-<name>``."""
    os.environ["COARS_MODEL_PATH"], os.environ["COARS_DATA_DIR"] = str(model), str(data_dir)
    try:
        return run_main_ppo(recipe, [OVERRIDE, f"trainer.default_local_dir={work / 'checkpoints'}", *extra], work / f"{recipe}-{name}")
    finally:
        del os.environ["COARS_MODEL_PATH"], os.environ["COARS_DATA_DIR"]


@pytest.fixture(scope="module")
def coars_runs(tmp_path_factory, primed_model_path, data_dir):
    work = tmp_path_factory.mktemp("coars-gpu-recipe")
    first = run_recipe("coars_movielens", work, primed_model_path, data_dir)
    assert first.returncode == 0, first.log_tail()
    resumed = run_recipe("coars_movielens", work, primed_model_path, data_dir, "trainer.resume_mode=auto", "trainer.total_epochs=2",
                         name="resumed")
    assert resumed.returncode == 0, resumed.log_tail()
    return first, resumed, work / "checkpoints"


def steps(run):
    """Each logged step's metrics (a resumed run logs its validation before training at the resumed step)."""
    return {m["step"]: m for m in run.metrics}


def trained(run):
    return sorted(step for step, m in steps(run).items() if "actor/grad_norm" in m)


def test_lambda_follows_the_recipes_share_of_the_run_verl_counted(coars_runs):
    first, resumed, _ = coars_runs
    run_steps = ROWS // PROMPTS_PER_STEP  # verl's count: one epoch of the slice
    decay = math.ceil(0.5 * run_steps)  # base/coars.yaml: lambda_decay_fraction 0.5
    got = steps(first)
    assert trained(first) == [1, 2, 3]
    for step in (1, 2, 3):
        assert got[step]["coars/sd/lambda"] == pytest.approx(lambda_schedule(step - 1, 0.5, decay)), step
    assert got[1]["coars/sd/lambda"] == 0.5 and got[3]["coars/sd/lambda"] == 0.0
    # the resumed run has two epochs: verl counts 6 steps, lambda decays over 3
    again = steps(resumed)
    assert trained(resumed) == [4, 5, 6]
    assert again[4]["coars/sd/lambda"] == pytest.approx(lambda_schedule(3, 0.5, math.ceil(0.5 * 2 * run_steps)))


def test_the_teacher_scores_with_the_recipes_sources(coars_runs):
    got = steps(coars_runs[0])
    for step in (1, 2):  # lambda above 0
        assert got[step]["coars/sd/scored_share"] > 0 and got[step]["coars/sd/teacher_tokens"] > 0, got[step]
        shares = {s: got[step][f"coars/sd/context_share/{s}"] for s in ("memory", "sibling", "hindsight")}
        assert sum(shares.values()) == pytest.approx(got[step]["coars/sd/context_share"])
    assert got[1]["coars/sd/context_share/memory"] == 0  # nothing remembered before step 1
    assert got[1]["coars/sd/context_share/sibling"] + got[1]["coars/sd/context_share/hindsight"] > 0
    assert got[2]["coars/sd/context_share/memory"] > 0  # the same user's step-1 dialogues
    assert got[3]["coars/sd/scored_share"] == 0 and got[3]["coars/sd/skipped/teacher_weight_zero"] == 1.0


def test_both_roles_train_with_lora_and_validation_runs_before_and_at_the_end(coars_runs):
    got = steps(coars_runs[0])
    for step in (1, 2, 3):
        assert got[step]["coars/rec/samples"] == got[step]["coars/user/samples"] == PROMPTS_PER_STEP * 8  # rollout.n 8
        assert got[step]["actor/grad_norm"] > 0
    for step in (0, 3):
        assert any(k.startswith("val-core/") for k in got[step]), sorted(got[step])
    assert not any(k.startswith("val-") for k in got[2])


def test_the_checkpoint_holds_the_lora_adapter_and_the_memory_and_resume_continues(coars_runs):
    first, resumed, checkpoints = coars_runs
    step3 = checkpoints / "global_step_3"
    assert (step3 / "coars_memory.json").is_file()
    assert (step3 / "actor" / "lora_train_meta.json").is_file()  # the recipe's LoRA, rank 64
    assert (checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == "6"
    assert steps(resumed)[4]["coars/sd/memory_records"] >= steps(first)[3]["coars/sd/memory_records"] > 0


def test_reczero_trains_plain_grpo_on_the_single_turn_rows(tmp_path, primed_model_path, data_dir):
    run = run_recipe("reczero_movielens", tmp_path, primed_model_path, data_dir)
    assert run.returncode == 0, run.log_tail()
    got = steps(run)
    assert trained(run) == [1, 2, 3]
    for step in (1, 2, 3):
        assert "critic/score/mean" in got[step] and got[step]["actor/grad_norm"] >= 0
        assert not any(k.startswith("coars/") for k in got[step])  # verl's own trainer and GRPO: no CoARS parts
    assert any(k.startswith("val-core/") for k in got[0])
