"""PNG figures: learning curves from a run's logged metrics, and a bar chart of evaluation results.

::

    python -m coars_verl.plots curves --metrics runs/x/metrics.jsonl [runs/y/metrics.jsonl ...] \\
        [--labels x y] [--smooth 5] --out curves.png
    python -m coars_verl.plots bars --results eval/a/results.json baselines/popularity.json --out bars.png

``curves`` reads verl's file-logger JSONL (one ``{"step": n, "data": {...}}`` per step) and draws,
per step, the reward of each role (``coars/rec/reward_mean`` solid, ``coars/user/reward_mean``
dashed), the dialogue Hit@1 (``coars/dialogue/hit_rate``), the recommender's ValidRatio
(``coars/rec/valid_ratio``) and the user agent's decision accuracy (``coars/user/accuracy``);
several runs share the panels, one colour each. ``--smooth K`` adds a trailing K-step mean over
the faint raw values.

``bars`` reads result JSON files of ``python -m coars_verl.eval`` / ``coars_verl.eval.baselines``
(or folders holding ``results.json``) and draws Hit@1, Hit@1 at turn 1, ValidRatio and the
user-simulation F1 (micro and macro) in percent, one bar per result; a metric a result does not
have (user simulation of the popularity baseline) is marked "n/a".
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

REWARD_KEYS = (("coars/rec/reward_mean", "recommender", "-"), ("coars/user/reward_mean", "user agent", "--"))
CURVE_PANELS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("reward per role", REWARD_KEYS),
    ("Hit@1 (dialogue hit rate)", (("coars/dialogue/hit_rate", "Hit@1", "-"),)),
    ("recommender ValidRatio", (("coars/rec/valid_ratio", "ValidRatio", "-"),)),
    ("user agent accuracy", (("coars/user/accuracy", "accuracy", "-"),)),
)
BAR_METRICS: tuple[tuple[str, str, str], ...] = (
    ("Hit@1", "recommendation", "hit_at_1"),
    ("Hit@1 turn 1", "recommendation", "hit_at_1_turn1"),
    ("ValidRatio", "recommendation", "valid_ratio"),
    ("user-sim F1 micro", "user_sim", "f1_micro"),
    ("user-sim F1 macro", "user_sim", "f1_macro"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, skipping steps where it is missing or not finite."""
    points = sorted((int(row["step"]), float(row[key])) for row in rows if _finite(row.get(key)))
    return [p[0] for p in points], [p[1] for p in points]


def trailing_mean(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(
    metrics_files: Sequence[str | Path],
    out: str | Path,
    labels: Optional[Sequence[str]] = None,
    smooth: int = 1,
    title: Optional[str] = None,
) -> Path:
    """Learning curves of one or more runs into one PNG; returns its path."""
    from coars_verl.utils.metrics_log import read_metrics

    if labels is not None and len(labels) != len(metrics_files):
        raise ValueError(f"{len(labels)} labels for {len(metrics_files)} metrics files")
    if smooth < 1:
        raise ValueError("smooth must be >= 1")
    runs = [(labels[i] if labels else Path(path).parent.name or Path(path).stem, read_metrics(path)) for i, path in enumerate(metrics_files)]
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    anything = False
    for ax, (panel_title, keys) in zip(axes.flat, CURVE_PANELS):
        drawn = False
        for r, (run_label, rows) in enumerate(runs):
            colour = colours[r % len(colours)]
            for key, key_label, style in keys:
                steps, values = series(rows, key)
                if not steps:
                    continue
                name = run_label if len(keys) == 1 else f"{run_label}: {key_label}"
                marker = "o" if len(steps) <= 30 else None
                if smooth > 1:
                    ax.plot(steps, values, style, color=colour, alpha=0.25, linewidth=1)
                    ax.plot(steps, trailing_mean(values, smooth), style, color=colour, label=name, marker=marker, markersize=3)
                else:
                    ax.plot(steps, values, style, color=colour, label=name, marker=marker, markersize=3)
                drawn = True
        ax.set_title(panel_title)
        ax.set_xlabel("training step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
            anything = True
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
    if not anything:
        plt.close(fig)
        raise ValueError(f"none of the curve metrics ({', '.join(k for _, ks in CURVE_PANELS for k, _, _ in ks)}) is in the metrics files")
    fig.suptitle(title or "CoARS training" + (f" (trailing mean of {smooth} steps)" if smooth > 1 else ""))
    fig.tight_layout()
    return _save(fig, plt, out)


def plot_bars(results: Sequence[Mapping[str, Any]], out: str | Path, title: Optional[str] = None) -> Path:
    """Grouped bar chart (percent) of evaluation results; returns the PNG path."""
    from coars_verl.eval.report import metric, result_label

    if not results:
        raise ValueError("no results to plot")
    plt = _pyplot()
    n = len(results)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(BAR_METRICS) + 0.5 * n), 5.0))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = 0.0
    for r, result in enumerate(results):
        for m, (_, task, key) in enumerate(BAR_METRICS):
            x = m - 0.4 + width * (r + 0.5)
            value = metric(result, task, key)
            if value is None:
                ax.text(x, 0.5, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="grey")
                continue
            pct = 100.0 * float(value)
            top = max(top, pct)
            ax.bar(x, pct, width * 0.95, color=colours[r % len(colours)], label=result_label(result))
            ax.text(x, pct, f"{pct:.1f}", ha="center", va="bottom", fontsize=7 if n <= 4 else 6, rotation=0 if n <= 4 else 90)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set_xticks(range(len(BAR_METRICS)))
    ax.set_xticklabels([name for name, _, _ in BAR_METRICS])
    ax.set_ylabel("%")
    ax.set_ylim(0, max(10.0, top * 1.15))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or "Evaluation")
    fig.tight_layout()
    return _save(fig, plt, out)


def _save(fig, plt, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.plots", description="PNG figures of CoARS runs and evaluations.")
    commands = parser.add_subparsers(dest="command", required=True)
    curves = commands.add_parser("curves", help="learning curves from verl's file-logger metrics JSONL")
    curves.add_argument("--metrics", nargs="+", required=True, help="metrics JSONL file(s), one per run")
    curves.add_argument("--labels", nargs="+", default=None, help="one label per metrics file (default: the folder name)")
    curves.add_argument("--smooth", type=int, default=1, help="trailing mean over K steps (1: none)")
    curves.add_argument("--title", default=None)
    curves.add_argument("--out", required=True, help="PNG file")
    bars = commands.add_parser("bars", help="bar chart of evaluation result JSON files")
    bars.add_argument("--results", nargs="+", required=True, help="result JSON files or evaluation folders")
    bars.add_argument("--title", default=None)
    bars.add_argument("--out", required=True, help="PNG file")
    args = parser.parse_args(argv)
    try:
        if args.command == "curves":
            path = plot_curves(args.metrics, args.out, labels=args.labels, smooth=args.smooth, title=args.title)
        else:
            from coars_verl.eval.report import load_result
            from coars_verl.eval.table import result_paths

            path = plot_bars([load_result(p) for p in result_paths(args.results)], args.out, title=args.title)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
