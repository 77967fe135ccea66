#!/usr/bin/env python
"""Time the preparation of ml-100k and LastFM (the < 10 s target); prints figures, asserts nothing.

    python data_prep/benchmark.py [--repeat 3] [--ml100k-dir DIR] [--lastfm-dir DIR]

ml-100k: a raw GroupLens folder (u.data, u.item, u.user) given with --ml100k-dir, else RecBole's
copy inside the installed ``recbole`` package (pip install --no-deps recbole==1.2.1).
LastFM: --lastfm-dir, else ``<repo root>/../shared/data/hetrec2011-lastfm-2k``.

For each dataset it reports the median over --repeat in-process runs of each stage (load,
protocol, write) and the wall time of one run of the command-line script in a fresh interpreter
(imports included), which is what a user waits for.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coars_verl.datasets.loaders import load_lastfm, load_movielens_100k, load_recbole
from coars_verl.datasets.pipeline import write_outputs
from coars_verl.datasets.protocol import ProtocolConfig, prepare

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 10.0


def _recbole_ml100k() -> Path | None:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    return p if p.is_dir() else None


def _bench(name: str, load, script: str, raw: Path, repeat: int, tmp: Path) -> dict[str, float]:
    stages: dict[str, list[float]] = {"load": [], "protocol": [], "write": [], "total": [], "cpu": []}
    samples = 0
    for r in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        data = load()
        t1 = time.perf_counter()
        prep = prepare(data, ProtocolConfig(), quiet=True)
        t2 = time.perf_counter()
        stats = write_outputs(prep, tmp / f"{name}-{r}", quiet=True)
        t3 = time.perf_counter()
        cpu = time.process_time() - c0
        for k, v in (("load", t1 - t0), ("protocol", t2 - t1), ("write", t3 - t2), ("total", t3 - t0), ("cpu", cpu)):
            stages[k].append(v)
        samples = sum(stats["samples"].values())
    env = dict(os.environ, COARS_NO_PROGRESS="1")
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, f"data_prep/{script}", "--raw-dir", str(raw), "--out", str(tmp / f"{name}-cli"), "--quiet"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    cli = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
    out = {k: statistics.median(v) for k, v in stages.items()}
    out["cli"] = cli if proc.returncode == 0 else float("nan")
    out["cli_cpu"] = cli_cpu
    out["samples"] = samples
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--ml100k-dir", type=Path, default=None)
    p.add_argument("--lastfm-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "hetrec2011-lastfm-2k")
    args = p.parse_args(argv)

    jobs = []
    if args.ml100k_dir is not None:
        jobs.append(("ml-100k", lambda: load_movielens_100k(args.ml100k_dir), "movielens.py", args.ml100k_dir))
    elif _recbole_ml100k() is not None:
        d = _recbole_ml100k()
        jobs.append(
            (
                "ml-100k (RecBole files)",
                lambda: load_recbole(d, title_normalizer="movielens", dataset_name="movielens-100k"),
                "movielens.py",
                d,
            )
        )
    else:
        print("ml-100k: skipped (pass --ml100k-dir or pip install --no-deps recbole==1.2.1)")
    if (args.lastfm_dir / "user_artists.dat").is_file():
        jobs.append(("LastFM", lambda: load_lastfm(args.lastfm_dir), "lastfm.py", args.lastfm_dir))
    else:
        print(f"LastFM: skipped (no user_artists.dat in {args.lastfm_dir})")

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPU(s), load average "
        f"{os.getloadavg()[0]:.1f}, median of {args.repeat} in-process runs; CLI = one fresh-process run"
    )
    print("wall-clock seconds (CPU seconds in brackets: what the run costs, whatever else the machine is doing)")
    head = (
        f"{'dataset':<24}{'samples':>8}{'load':>7}{'protocol':>10}{'write':>7}{'in-process':>18}"
        f"{'CLI (fresh python)':>22}  target < {TARGET_S:.0f} s"
    )
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory(prefix="coars-bench-") as tmp:
        for name, load, script, raw in jobs:
            r = _bench(name.split()[0], load, script, raw, args.repeat, Path(tmp))
            wall_ok = max(r["total"], r["cli"]) < TARGET_S
            cpu_ok = max(r["cpu"], r["cli_cpu"]) < TARGET_S
            verdict = "met" if wall_ok else ("met in CPU time; wall time inflated by load" if cpu_ok else "MISSED")
            inproc = f"{r['total']:.2f} ({r['cpu']:.2f})"
            cli = f"{r['cli']:.2f} ({r['cli_cpu']:.2f})"
            print(
                f"{name:<24}{r['samples']:>8,}{r['load']:>7.2f}{r['protocol']:>10.2f}{r['write']:>7.2f}"
                f"{inproc:>18}{cli:>22}  {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
