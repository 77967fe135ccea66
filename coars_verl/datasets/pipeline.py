"""Load -> protocol -> write: what every data_prep script runs, and the stats / summary."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

from coars_verl.datasets.loaders import LoadedDataset
from coars_verl.datasets.progress import progress
from coars_verl.datasets.protocol import SPLITS, Prepared, ProtocolConfig, prepare
from coars_verl.datasets.schema import data_source_for, items_table, sample_table, user_sim_table
from coars_verl.datasets.writer import GENERATOR, atomic_output_dir, write_json, write_parquet


STATS_VERSION = 1
OUTPUT_FILES = (
    "train.parquet",
    "valid.parquet",
    "test.parquet",
    "user_sim_valid.parquet",
    "user_sim_test.parquet",
    "items.parquet",
    "stats.json",
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_stats(prep: Prepared, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    us = {
        name: {
            "users": len(s),
            "positives": int(s.pos_items.size),
            "negatives": int(s.neg_items.size),
        }
        for name, s in prep.user_sim.items()
    }
    return {
        "generator": GENERATOR,
        "stats_version": STATS_VERSION,
        "dataset": prep.name,
        "data_source": data_source_for(prep.name),
        "format": prep.format,
        "input_files": list(prep.files),
        "title_normalizer": prep.title_normalizer,
        "protocol": prep.config.as_dict(),
        "raw": dict(prep.raw_stats),
        "clean": dict(prep.clean_stats),
        "dropped": prep.drops.as_dict(),
        "users_per_split": {k: prep.users_per_split[k] for k in SPLITS},
        "samples": {k: len(prep.splits[k]) for k in SPLITS},
        "user_sim": us,
        "info": prep.info,
        "outputs": outputs,
    }


def write_outputs(prep: Prepared, out: str | os.PathLike, quiet: bool = False) -> dict[str, Any]:
    """Write every output file into ``out`` atomically; returns the stats written to stats.json."""
    with atomic_output_dir(out) as tmp:
        outputs: dict[str, dict[str, Any]] = {}
        jobs: list[tuple[str, Callable[[], Any]]] = []
        for name in SPLITS:
            jobs.append((f"{name}.parquet", lambda name=name: sample_table(prep, name, prep.splits[name], quiet)))
        for name in ("valid", "test"):
            jobs.append((f"user_sim_{name}.parquet", lambda name=name: user_sim_table(prep, name, prep.user_sim[name])))
        jobs.append(("items.parquet", lambda: items_table(prep)))
        bar = progress(total=len(jobs), desc="write", quiet=quiet)
        for fname, make in jobs:
            table = make()
            write_parquet(table, tmp / fname)
            outputs[fname] = {"rows": table.num_rows, "sha256": _sha256(tmp / fname)}
            bar.update()
        bar.close()
        stats = build_stats(prep, outputs)
        write_json(stats, tmp / "stats.json")
    return stats


def run_pipeline(
    data: LoadedDataset, config: ProtocolConfig, out: str | os.PathLike, quiet: bool = False
) -> dict[str, Any]:
    prep = prepare(data, config, quiet=quiet)
    return write_outputs(prep, out, quiet=quiet)


def format_summary(stats: dict[str, Any], out: str | os.PathLike | None = None) -> str:
    """A short plain-text table of a preparation."""
    raw, clean = stats["raw"], stats["clean"]
    lines = [
        f"{stats['data_source']}  (format {stats['format']}, seed {stats['protocol']['seed']})"
        + (f"  ->  {out}" if out is not None else "")
    ]
    w = 14
    lines.append(f"{'':<16}{'users':>{w}}{'items':>{w}}{'interactions':>{w}}")
    lines.append(f"{'raw':<16}{raw['users']:>{w},}{raw['items']:>{w},}{raw['interactions']:>{w},}")
    lines.append(f"{'clean':<16}{clean['users']:>{w},}{clean['items']:>{w},}{clean['interactions']:>{w},}")
    lines.append(f"{'':<16}{'train':>{w}}{'valid':>{w}}{'test':>{w}}")
    ups, smp = stats["users_per_split"], stats["samples"]
    lines.append(f"{'users':<16}" + "".join(f"{ups[k]:>{w},}" for k in SPLITS))
    lines.append(f"{'samples':<16}" + "".join(f"{smp[k]:>{w},}" for k in SPLITS))
    us = stats["user_sim"]
    lines.append(f"{'user-sim users':<16}{'-':>{w}}" + "".join(f"{us[k]['users']:>{w},}" for k in ("valid", "test")))
    lines.append(
        f"{'user-sim +/-':<16}{'-':>{w}}"
        + "".join(f"{str(us[k]['positives']) + '/' + str(us[k]['negatives']):>{w}}" for k in ("valid", "test"))
    )
    dropped = stats["dropped"]
    if dropped:
        lines.append("dropped: " + ", ".join(f"{k}={v:,}" for k, v in dropped.items()))
    else:
        lines.append("dropped: nothing")
    return "\n".join(lines)
