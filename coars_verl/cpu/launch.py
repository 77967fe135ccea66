"""Launch ``python -m verl.trainer.main_ppo`` on CPU in a child process, as a user would.

Used by ``make demo`` and the end-to-end tests: sets ``VERL_PLATFORM=cpu`` and verl's file
logger path, sends all output to a log file, and stops Ray before and after (a leftover raylet
slows or breaks the next run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from coars_verl.utils.metrics_log import read_metrics

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


@dataclass
class TrainingRun:
    returncode: int
    log_path: Path
    metrics_path: Path
    wall_s: float

    @property
    def metrics(self) -> list[dict]:
        return read_metrics(self.metrics_path) if self.metrics_path.exists() else []

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def stop_ray() -> None:
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True, timeout=120)


def run_main_ppo(
    recipe: str,
    overrides: list[str],
    workdir: Path,
    recipes_dir: Path = RECIPES_DIR,
    timeout_s: int = 1800,
    echo: bool = False,
) -> TrainingRun:
    """Run main_ppo with ``--config-path recipes_dir --config-name recipe`` in ``workdir``."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path, metrics_path = workdir / "train.log", workdir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "VERL_PLATFORM": "cpu",
        "VERL_FILE_LOGGER_PATH": str(metrics_path),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(Path(recipes_dir).resolve()), "--config-name", recipe, *overrides]
    stop_ray()
    start = time.perf_counter()
    try:
        with open(log_path, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            if echo:
                proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for line in proc.stdout:
                    log.write(line)
                    if "step:" in line or "Error" in line or "Training Progress" in line:
                        print(line.rstrip()[:300], flush=True)
                returncode = proc.wait(timeout=timeout_s)
            else:
                returncode = subprocess.run(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
    finally:
        stop_ray()
    return TrainingRun(returncode, log_path, metrics_path, time.perf_counter() - start)
