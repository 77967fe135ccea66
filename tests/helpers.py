"""Running ``python -m verl.trainer.main_ppo`` on CPU from tests, the way a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from coars_verl.utils.metrics_log import read_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "recipes"


@dataclass
class TrainingRun:
    returncode: int
    log_path: Path
    metrics: list[dict]

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def stop_ray() -> None:
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True, timeout=120)


def run_main_ppo(recipe: str, overrides: list[str], workdir: Path, timeout_s: int = 900) -> TrainingRun:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path, metrics_path = workdir / "train.log", workdir / "metrics.jsonl"
    env = {**os.environ, "VERL_PLATFORM": "cpu", "VERL_FILE_LOGGER_PATH": str(metrics_path), "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "1"}
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(RECIPES), "--config-name", recipe, *overrides]
    stop_ray()
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
    finally:
        stop_ray()
    metrics = read_metrics(metrics_path) if metrics_path.exists() else []
    return TrainingRun(proc.returncode, log_path, metrics)
