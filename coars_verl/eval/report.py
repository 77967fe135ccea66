"""Results files: the JSON schema shared by the evaluation tool and the baselines, and markdown.

A results JSON holds ``schema`` (``coars_eval/1``), ``label``, ``kind`` (``model`` or
``baseline``), ``complete``, ``model``, ``data``, ``config``, ``counts``, ``metrics``
(``recommendation`` and ``user_sim``, each a dict of :mod:`coars_verl.eval.metrics` keys, or
None when the task was not run) and ``timings``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

SCHEMA = "coars_eval/1"

METRIC_KINDS: dict[str, tuple[str, str]] = {
    **{key: ("recommendation", "pct") for key in ("hit_at_1", "hit_at_1_turn1", "target_recommended", "valid_ratio",
                                                  "valid_ratio_mean", "accept_rate", "user_format_error_rate")},
    "dialogues": ("recommendation", "int"),
    "turns_mean": ("recommendation", "float"),
    **{key: ("user_sim", "pct") for key in ("precision_micro", "recall_micro", "f1_micro", "precision_macro", "recall_macro",
                                            "f1_macro", "accuracy", "yes_rate", "positive_rate", "format_error_rate")},
    "users": ("user_sim", "int"),
}
"""Each metric key of results.json: its task and how it is shown ("pct": value * 100)."""


def _rows(*shown: tuple[str, str]) -> tuple[tuple[str, str, str, str], ...]:
    """``(label, metric key)`` pairs as ``(label, task, key, kind)`` rows."""
    return tuple((label, METRIC_KINDS[key][0], key, METRIC_KINDS[key][1]) for label, key in shown)


TABLE_COLUMNS = _rows(
    ("dialogues", "dialogues"), ("Hit@1 (%)", "hit_at_1"), ("Hit@1 turn 1 (%)", "hit_at_1_turn1"), ("ValidRatio (%)", "valid_ratio"),
    ("turns", "turns_mean"), ("users", "users"), ("P micro (%)", "precision_micro"), ("R micro (%)", "recall_micro"),
    ("F1 micro (%)", "f1_micro"), ("P macro (%)", "precision_macro"), ("R macro (%)", "recall_macro"), ("F1 macro (%)", "f1_macro"),
)
"""The comparison table's columns: (header, task, metric key, kind)."""

_DETAIL_ROWS = _rows(
    ("Hit@1", "hit_at_1"), ("Hit@1 at turn 1", "hit_at_1_turn1"), ("target recommended at any turn", "target_recommended"),
    ("ValidRatio (pooled turns)", "valid_ratio"), ("ValidRatio (mean of dialogues)", "valid_ratio_mean"), ("mean turns", "turns_mean"),
    ("accepted by the user agent", "accept_rate"), ("user format errors (of answered turns)", "user_format_error_rate"),
    ("dialogues", "dialogues"), ("user-sim precision micro", "precision_micro"), ("user-sim recall micro", "recall_micro"),
    ("user-sim F1 micro", "f1_micro"), ("user-sim precision macro", "precision_macro"), ("user-sim recall macro", "recall_macro"),
    ("user-sim F1 macro", "f1_macro"), ("user-sim accuracy", "accuracy"), ("user-sim yes rate", "yes_rate"),
    ("user-sim positive rate", "positive_rate"), ("user-sim format errors", "format_error_rate"), ("users / judgments", "users"),
)
"""One result's detail rows; "users" is shown with the number of judgments."""


def format_value(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100.0 * float(value):.2f}"
    if kind == "float":
        return f"{float(value):.2f}"
    return str(int(value))


def metric(result: Mapping[str, Any], task: str, key: str) -> Any:
    block = (result.get("metrics") or {}).get(task)
    return None if block is None else block.get(key)


def result_label(result: Mapping[str, Any]) -> str:
    label = str(result.get("label") or "?")
    return label if result.get("complete", True) else f"{label} (partial)"


def markdown_single(result: Mapping[str, Any]) -> str:
    """One result as a short header plus a metric/value table (percentages for ratios)."""
    config = result.get("config") or {}
    model = result.get("model") or {}
    lines = [f"# Evaluation: {result_label(result)}", ""]
    if model.get("path"):
        lines.append(f"- model: `{model['path']}`" + (f" (loaded from `{model['resolved']}`)" if model.get("resolved") not in (None, model["path"]) else ""))
    data = result.get("data") or {}
    if data.get("dir"):
        lines.append(f"- data: `{data['dir']}`, split `{data.get('split')}`")
    settings = ", ".join(f"{k}={config[k]}" for k in ("backend", "dtype", "max_turns", "numbered_candidates", "max_tokens", "one_per_user", "max_samples", "max_users") if k in config)
    if settings:
        lines.append(f"- settings: {settings} (greedy decoding)")
    lines += ["", "| metric | value |", "|---|---|"]
    for name, task, key, kind in _DETAIL_ROWS:
        if (result.get("metrics") or {}).get(task) is None:
            continue
        if key == "users":
            value = f"{metric(result, task, 'users')} / {metric(result, task, 'judgments')}"
        else:
            value = format_value(metric(result, task, key), kind)
            if kind == "pct":
                name += " (%)"
        lines.append(f"| {name} | {value} |")
    timings = result.get("timings") or {}
    if timings:
        lines += ["", "timings: " + ", ".join(f"{k}={v}" for k, v in timings.items())]
    return "\n".join(lines) + "\n"


def markdown_table(results: Sequence[Mapping[str, Any]], columns: Iterable[tuple[str, str, str, str]] = TABLE_COLUMNS) -> str:
    """Several results as one comparison table, one row per result (in the given order)."""
    columns = list(columns)
    lines = ["| method | " + " | ".join(c[0] for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for result in results:
        cells = [format_value(metric(result, task, key), kind) for _, task, key, kind in columns]
        lines.append(f"| {result_label(result)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_result(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        result = json.load(fh)
    if not isinstance(result, dict) or result.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a coars evaluation result (expected schema {SCHEMA!r})")
    result.setdefault("label", Path(path).stem)
    return result


def make_result(
    *,
    label: str,
    kind: str,
    complete: bool,
    model: Optional[Mapping[str, Any]],
    data: Mapping[str, Any],
    config: Mapping[str, Any],
    counts: Mapping[str, Any],
    recommendation: Optional[Mapping[str, Any]],
    user_sim: Optional[Mapping[str, Any]],
    timings: Optional[Mapping[str, Any]] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    result = {
        "schema": SCHEMA,
        "label": label,
        "kind": kind,
        "complete": complete,
        "model": dict(model) if model else None,
        "data": dict(data),
        "config": dict(config),
        "counts": dict(counts),
        "metrics": {
            "recommendation": dict(recommendation) if recommendation is not None else None,
            "user_sim": dict(user_sim) if user_sim is not None else None,
        },
        "timings": dict(timings or {}),
    }
    if extra:
        result.update(extra)
    return result
