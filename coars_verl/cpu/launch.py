"""Launch ``python -m verl.trainer.main_ppo`` on CPU in a child process, as a user would.

Used by ``make demo``, the benchmarks and the end-to-end tests: sets ``VERL_PLATFORM=cpu`` and
verl's file logger path, sends all output to a log file.

Ray: the run starts its own local Ray instance (``RAY_ADDRESS=local``: never the user's cluster,
even when one runs on this machine) in its own process group, and on exit, timeout or Ctrl-C that
process group, and only it, is stopped. A researcher's other Ray jobs are never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from coars_verl.recipes import RECIPES_DIR
from coars_verl.utils.metrics_log import read_metrics


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


def stop_process_group(pgid: int, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``, to the process group ``pgid`` (the run and the Ray
    processes it started); nothing else. A group that is already gone is fine."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


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
        "RAY_ADDRESS": "local",
    }
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(Path(recipes_dir).resolve()), "--config-name", recipe, *overrides]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE if echo else log, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            if echo:
                for line in proc.stdout:
                    log.write(line)
                    if "step:" in line or "Error" in line or "Training Progress" in line:
                        print(line.rstrip()[:300], flush=True)
            returncode = proc.wait(timeout=max(timeout_s - (time.perf_counter() - start), 1))
        except subprocess.TimeoutExpired:
            returncode = 124
            log.write(f"\ncoars: main_ppo ran past {timeout_s} s and was stopped\n")
        finally:
            stop_process_group(proc.pid)  # its own session: the run, its Ray, their workers; nothing else
    return TrainingRun(returncode, log_path, metrics_path, time.perf_counter() - start)
