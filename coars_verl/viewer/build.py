"""Read a run folder (training or evaluation) into what the page shows, and render the page.

A training run folder holds verl's ``metrics.jsonl`` and a credit folder
(``<trainer.rollout_data_dir>/credit``, :mod:`coars_verl.credit_dump`) in it or one level below
(``RUN_DIR/credit`` or ``RUN_DIR/*/credit``). An evaluation folder (``coars-eval --out``) holds
``dialogue.jsonl`` and ``results.json``. Pure Python and Jinja2; no tokenizer, no network.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Optional

from coars_verl.credit_dump import FOLDER as CREDIT_FOLDER
from coars_verl.credit_dump import read_credit_steps

QUANTITIES = (
    ("a", "advantage", "final advantage A_t (what the update used)"),
    ("o", "outcome_advantage", "outcome advantage A (per-role GRPO, before the teacher)"),
    ("d", "delta", "delta = teacher - student log-prob (nats)"),
    ("w", "weight", "rlsd weight w_t, or the additive term"),
)
"""(data attribute, dump field, legend label) of each quantity a token can be coloured by."""

PLOTS = (
    ("Hit@1 (training dialogues)", {"hit rate": "coars/dialogue/hit_rate"}),
    ("Reward per role", {"recommender": "coars/rec/reward_mean", "user": "coars/user/reward_mean"}),
    ("Teacher context share per source", "coars/sd/context_share/"),
    ("Delta mean (nats)", {"all": "coars/sd/all/delta_mean", "recommender": "coars/sd/recommender/delta_mean", "user": "coars/sd/user/delta_mean"}),
)
ROLE_ORDER = {"recommender": 0, "user": 1}
SCALE_QUANTILE = 0.95
"""Full colour at this quantile of |value - centre| over the page's trained tokens (beyond it, saturated):
one outlying token does not wash out the others."""


def colour_scale(spread: list[float]) -> float:
    if not spread:
        return 1.0
    ordered = sorted(spread)
    return ordered[min(int(SCALE_QUANTILE * len(ordered)), len(ordered) - 1)] or ordered[-1] or 1.0


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def read_metrics_lenient(path: Path) -> list[dict]:
    """verl's file-logger lines ``{"step", "data"}``; a line being written (the run still going) is skipped."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            rows.append({"step": int(record["step"]), **record["data"]})
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def find_credit_folder(run_dir: Path) -> Optional[Path]:
    for candidate in [run_dir / CREDIT_FOLDER, *sorted(run_dir.glob(f"*/{CREDIT_FOLDER}"))]:
        if candidate.is_dir():
            return candidate
    return None


# ------------------------------------------------------------------------------ tokens and chat
def segments(sample: dict) -> list[dict]:
    """A dumped sample's response cut into runs of equal mask: ``{"own": bool, "tokens": [...]}``, each
    token ``{"i", "text", "a", "o", "d", "w"}`` (its index in the response and its values)."""
    mask = sample["response_mask"]
    term = sample.get("weight") if sample.get("weight") is not None else sample.get("additive_term")
    columns = {"a": sample["advantage"], "o": sample["outcome_advantage"], "d": sample.get("delta"), "w": term}
    runs: list[dict] = []
    for i, text in enumerate(sample["tokens"]):
        own = bool(mask[i])
        if not runs or runs[-1]["own"] != own:
            runs.append({"own": own, "tokens": []})
        token = {"i": i, "text": text}
        for name, values in columns.items():
            token[name] = values[i] if values is not None else None
        runs[-1]["tokens"].append(token)
    return runs


def chat_turns(dialogue: dict) -> list[dict]:
    """The dialogue as a chat: the k-th own run of the recommender's sample, then the k-th own run of
    the user agent's sample, and so on (each role's own tokens, coloured by its own credit). Samples
    of other roles (a single-turn task's answers of one prompt) follow in key order."""
    samples = sorted(dialogue["samples"], key=lambda s: (ROLE_ORDER.get(s["role"], 2), s["key"]))
    own = [(s, [run for run in segments(s) if run["own"]]) for s in samples]
    turns = []
    for k in range(max((len(runs) for _, runs in own), default=0)):
        for sample, runs in own:
            if k < len(runs):
                turns.append({"role": sample["role"], "turn": k + 1, "key": sample["key"], "tokens": runs[k]["tokens"]})
    return turns


def token_text(text: str) -> str:
    """A token's text for HTML: escaped, each newline shown as a symbol before it (the page keeps line breaks)."""
    return escape(text).replace("\n", "\u21b5\n")


# ------------------------------------------------------------------------------ plots
def line_chart(title: str, series: dict[str, list[tuple[float, float]]], width: int = 300, height: int = 150) -> str:
    """An inline SVG line chart (no library): one polyline per series, y range and steps labelled."""
    points = [p for values in series.values() for p in values if p[1] is not None and math.isfinite(p[1])]
    head = f'<svg class="plot" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"><title>{escape(title)}</title>'
    head += f'<text x="4" y="12" class="pt">{escape(title)}</text>'
    if not points:
        return head + f'<text x="4" y="{height // 2}" class="pl">no data</text></svg>'
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    if x1 == x0:
        x1 = x0 + 1
    left, right, top, bottom = 40, width - 8, 20, height - 30
    sx = lambda x: left + (x - x0) / (x1 - x0) * (right - left)  # noqa: E731
    sy = lambda y: bottom - (y - y0) / (y1 - y0) * (bottom - top)  # noqa: E731
    body = [f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="ax"/><line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="ax"/>',
            f'<text x="2" y="{top + 4}" class="pl">{y1:.3g}</text><text x="2" y="{bottom}" class="pl">{y0:.3g}</text>',
            f'<text x="{left}" y="{bottom + 12}" class="pl">step {x0:g}</text><text x="{right - 40}" y="{bottom + 12}" class="pl">{x1:g}</text>']
    for n, (name, values) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values if y is not None and math.isfinite(y))
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        body += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{color}"/>' for x, y in values if y is not None and math.isfinite(y)]
        body.append(f'<text x="{left + 4 + 90 * n}" y="{height - 4}" class="pl" fill="{color}">{escape(name)}</text>')
    return head + "".join(body) + "</svg>"


def metric_plots(metrics: list[dict]) -> list[str]:
    rows = [m for m in metrics if m.get("step", 0) >= 1]
    charts = []
    for title, spec in PLOTS:
        if isinstance(spec, str):  # a prefix: one series per key under it
            names = sorted({k for m in rows for k in m if k.startswith(spec)})
            spec = {name[len(spec):]: name for name in names}
        series = {label: [(m["step"], float(m[key])) for m in rows if isinstance(m.get(key), (int, float))] for label, key in spec.items()}
        charts.append(line_chart(title, {k: v for k, v in series.items() if v}))
    return charts


# ------------------------------------------------------------------------------ the page's model
@dataclass
class Page:
    title: str
    kind: str
    """``training`` (credit dumps) or ``evaluation`` (dialogue.jsonl)."""
    steps: list[dict] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    metrics_table: list[tuple[str, Any]] = field(default_factory=list)
    scales: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def training_page(run_dir: Path) -> Page:
    credit = find_credit_folder(run_dir)
    steps = read_credit_steps(credit) if credit is not None else []
    metrics = read_metrics_lenient(run_dir / "metrics.jsonl")
    spreads: dict[str, list[float]] = {q: [] for q, _, _ in QUANTITIES}
    views = []
    for payload in steps:
        dialogues = []
        for dialogue in payload["dialogues"]:
            summary = dialogue.get("summary") or {}
            for sample in dialogue["samples"]:
                for q, name, _ in QUANTITIES:
                    values = sample.get(name) if q != "w" else (sample.get("weight") if sample.get("weight") is not None else sample.get("additive_term"))
                    if values:
                        own = [v for v, m in zip(values, sample["response_mask"]) if m]
                        center = 1.0 if q == "w" and sample.get("weight") is not None else 0.0
                        spreads[q] += [abs(v - center) for v in own]
            dialogues.append({
                "session": dialogue["session"], "summary": summary, "rewards": dialogue["rewards"], "turns": chat_turns(dialogue),
                "samples": [{"key": s["key"], "role": s["role"], "reward": s["reward"], "teacher": s.get("teacher"),
                             "tokens": len(s["tokens"]), "trained": sum(s["response_mask"])}
                            for s in sorted(dialogue["samples"], key=lambda s: (ROLE_ORDER.get(s["role"], 2), s["key"]))],
            })
        views.append({"step": payload["step"], "settings": payload.get("self_distill", {}), "dialogues": dialogues})
    settings = steps[-1].get("self_distill", {}) if steps else {}
    last = next((m for m in reversed(metrics) if m.get("step", 0) >= 1), {})
    table = [(k, last[k]) for k in ("coars/dialogue/hit_rate", "coars/rec/reward_mean", "coars/user/reward_mean", "coars/sd/context_share",
                                    "coars/sd/all/delta_mean") if k in last]
    return Page(title=f"CoARS run: {run_dir.name}", kind="training", steps=views, plots=metric_plots(metrics), metrics_table=table,
                scales={k: colour_scale(v) for k, v in spreads.items()}, settings=settings)


def evaluation_turns(summary: dict) -> list[dict]:
    """An evaluated dialogue's turns as a chat (no token credit): each recommender answer, then the user's verdict."""
    turns = []
    raws, users = summary.get("rec_raw") or [], summary.get("user_raw") or []
    for k in range(int(summary.get("turns", 0))):
        pick = lambda name, default="": (summary.get(name) or [])[k] if k < len(summary.get(name) or []) else default  # noqa: E731
        rec_text = raws[k] if k < len(raws) and raws[k] else f"Item: {pick('rec_item_titles')} Reason: {pick('rec_reasons')}"
        verdict = {1: "yes", 0: "no", -1: "did not act"}.get(pick("user_decisions", -1), "?")
        notes = (["target"] if pick("is_target", False) else []) + ([f"invalid: {pick('rec_errors') or pick('rec_problems')}"] if not pick("rec_valid", True) else [])
        turns.append({"role": "recommender", "turn": k + 1, "text": rec_text, "note": ", ".join(notes)})
        if pick("user_decisions", -1) != -1:
            user_text = users[k] if k < len(users) and users[k] else pick("user_reasons")
            turns.append({"role": "user", "turn": k + 1, "text": user_text, "note": f"verdict: {verdict}"})
    return turns


def evaluation_page(run_dir: Path) -> Page:
    dialogues = []
    for line in (run_dir / "dialogue.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being appended
        summary = row.get("summary") or {}
        dialogues.append({"session": str(row.get("key")), "summary": summary, "rewards": {}, "turns": evaluation_turns(summary),
                          "memory_context": row.get("memory_context"), "samples": []})
    results = run_dir / "results.json"
    metrics = json.loads(results.read_text()).get("metrics", {}) if results.is_file() else {}
    flat = []
    for task, values in metrics.items():
        if isinstance(values, dict):
            flat += [(f"{task}/{k}", v) for k, v in values.items() if not isinstance(v, (dict, list))]
        else:
            flat.append((task, values))
    return Page(title=f"CoARS evaluation: {run_dir.name}", kind="evaluation", steps=[{"step": "eval", "settings": {}, "dialogues": dialogues}],
                metrics_table=flat)


def load_page(run_dir: Path) -> Page:
    run_dir = Path(run_dir)
    if (run_dir / "dialogue.jsonl").is_file():
        return evaluation_page(run_dir)
    if find_credit_folder(run_dir) is None and not (run_dir / "metrics.jsonl").is_file():
        raise FileNotFoundError(f"{run_dir}: neither a training run (metrics.jsonl, credit/ from trainer.rollout_data_dir) nor an "
                                "evaluation folder (dialogue.jsonl)")
    return training_page(run_dir)


def render(page: Page) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(loader=PackageLoader("coars_verl.viewer", "templates"), autoescape=select_autoescape(["jinja", "html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["tok"] = lambda text: Markup(token_text(text))
    env.filters["num"] = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    return env.get_template("page.html.jinja").render(page=page, quantities=QUANTITIES)


def build(run_dir: Path, out: Optional[Path] = None) -> Path:
    """Write the page of ``run_dir`` to ``out`` (default ``RUN_DIR/viewer.html``); returns its path."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "viewer.html"
    html = render(load_page(run_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
