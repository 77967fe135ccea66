"""Evaluation test fixtures."""

from pathlib import Path

import pytest

from eval_fakes import write_small_data


@pytest.fixture
def small_data(tmp_path) -> Path:
    return write_small_data(tmp_path / "data")
