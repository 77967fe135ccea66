"""Benchmark: wall time, seconds per step and peak memory of a CPU training run through main_ppo.

    python -m coars_verl.bench.cpu_run [--recipe cpu_grpo_tiny|cpu_coars_tiny] [--steps 2]

Peak memory is the largest sum, over the run's processes (the main_ppo driver, Ray's daemons and
every Ray worker), of their proportional set size (shared pages split among the processes that
map them), sampled every half second.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path

import pandas as pd
import psutil

from coars_verl.cpu.launch import run_main_ppo
from coars_verl.demo import build_model, prepare_movielens

_RUN_MARKERS = ("main_ppo", "ray::", "raylet", "gcs_server", "dashboard", "ray/_private", "log_monitor", "default_worker")


def run_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if any(marker in cmdline for marker in _RUN_MARKERS):
            found.append(proc)
    return found


def total_pss_bytes() -> int:
    total = 0
    for proc in run_processes():
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakSampler(threading.Thread):
    def __init__(self, interval_s: float = 0.5):
        super().__init__(daemon=True)
        self.interval_s, self.peak, self._halt = interval_s, 0, threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, total_pss_bytes())
            self._halt.wait(self.interval_s)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def synthetic_prompts(path: Path, n: int) -> None:
    titles = ["Toy Story", "Heat", "Fargo", "Casino", "Babe", "Se7en", "Clueless", "Jumanji"]
    rows = [
        {
            "data_source": "coars/synthetic",
            "prompt": [{"role": "user", "content": f"Candidates: {', '.join(titles)}. Recommend one."}],
            "ability": "recommendation",
            "reward_model": {"style": "rule", "ground_truth": titles[i % len(titles)]},
            "extra_info": {"index": i},
        }
        for i in range(n)
    ]
    pd.DataFrame(rows).to_parquet(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.bench.cpu_run", description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=("cpu_grpo_tiny", "cpu_coars_tiny"), default="cpu_grpo_tiny")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    artifacts = args.artifacts.resolve()
    work = Path(tempfile.mkdtemp(prefix=f"bench-{args.recipe}-", dir=artifacts))
    if args.recipe == "cpu_grpo_tiny":
        model = build_model("tiny", artifacts / "models")
        synthetic_prompts(work / "train.parquet", 4 * args.steps)
        synthetic_prompts(work / "val.parquet", 4)
        data = [f"data.train_files={work / 'train.parquet'}", f"data.val_files={work / 'val.parquet'}"]
    else:
        model = build_model("primed", artifacts / "models")
        prepared = prepare_movielens(artifacts / "data" / "movielens-100k")
        data = [f"data.train_files={prepared / 'train.parquet'}", f"data.val_files={prepared / 'valid.parquet'}"]
    sampler = PeakSampler()
    sampler.start()
    run = run_main_ppo(args.recipe, [f"actor_rollout_ref.model.path={model}", f"trainer.total_training_steps={args.steps}", *data], work)
    peak = sampler.stop()
    if run.returncode != 0:
        print(run.log_tail(3000), file=sys.stderr)
        return run.returncode
    steps = [m["timing_s/step"] for m in run.metrics]
    report = {
        "recipe": args.recipe,
        "steps": len(steps),
        "wall_s": round(run.wall_s, 1),
        "step_s": [round(s, 2) for s in steps],
        "peak_pss_gib": round(peak / 2**30, 2),
    }
    print(f"{args.recipe}: {len(steps)} steps in {run.wall_s:.0f} s wall (Ray start-up included); "
          f"seconds per step {', '.join(f'{s:.1f}' for s in steps)}; peak memory {peak / 2**30:.2f} GiB (PSS, all run processes)")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
