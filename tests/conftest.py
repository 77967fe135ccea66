"""Shared fixtures: an offline tiny model built once per session, and the CPU environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    from coars_verl.models.tiny import cached_tiny_model

    return cached_tiny_model(os.environ.get("COARS_VERL_MODEL_CACHE") or tmp_path_factory.getbasetemp() / "models")
