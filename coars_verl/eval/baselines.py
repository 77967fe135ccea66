"""Baselines on the same stored samples as the evaluation tool (coars_verl/eval/README.md, "Comparison baselines").

* **random**: recommend one candidate uniformly at random; answer each user-simulation item yes
  with probability ``p`` (0.5). Reported twice: the exact expectation (Hit@1 = mean of 1/|C|;
  user-sim precision = positive rate x (1 - (1-p)^n), recall = p, F1 and macro values exactly, see
  :func:`coars_verl.eval.metrics.expected_random_prf`) and one seeded simulation.
* **popularity**: recommend the candidate with the most interactions in the train split
  (``items.parquet`` ``train_interactions``; items absent from it count 0), ties broken by the
  smallest item id (numerically when both ids are integers, else as text). Deterministic, so its
  Hit@1 is exact. No user-simulation counterpart.
* **zero-shot**: the evaluation tool on the untrained model (``python -m coars_verl.eval --model
  <base model>``), not here.

Baselines recommend once: their Hit@1 equals their Hit@1 at turn 1, ValidRatio is 1 and the
number of turns 1.

``python -m coars_verl.eval.baselines --data DIR --out DIR [--one-per-user] [--max-samples N] [--max-users N]``
writes ``random_expected.json``, ``random_seed<S>.json``, ``popularity.json`` (and ``.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from coars_verl.dialogue.state import DialogueSample
from coars_verl.eval import data as data_mod
from coars_verl.eval.metrics import (
    Judgment,
    expected_random_hit_at_1,
    expected_random_user_sim,
    recommendation_metrics,
    user_sim_metrics,
)
from coars_verl.eval.report import make_result, markdown_single, markdown_table
from coars_verl.eval.store import write_json_atomic, write_text_atomic


def _id_order(item_id: str) -> tuple[int, int, str]:
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)


def popularity_pick(candidate_ids: Sequence[str], train_interactions: Mapping[str, int]) -> int:
    """Position of the most-interacted candidate; ties go to the smallest item id."""
    if not candidate_ids:
        raise ValueError("popularity needs candidate item ids")
    return min(
        range(len(candidate_ids)),
        key=lambda i: (-int(train_interactions.get(candidate_ids[i], 0)), _id_order(str(candidate_ids[i]))),
    )


def single_shot_summary(hit: bool) -> dict[str, Any]:
    """What ``recommendation_metrics`` needs for a one-recommendation baseline."""
    return {"hit": bool(hit), "k_hit": 1 if hit else 0, "turns": 1, "rec_valid": [True], "end_reason": "single_shot"}


def _baseline_recommendation(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    metrics = recommendation_metrics(summaries)
    metrics["accept_rate"] = None  # no user agent
    metrics["user_format_error_rate"] = None
    return metrics


def popularity_metrics(rows: Sequence[data_mod.DialogueRow], train_interactions: Mapping[str, int]) -> dict[str, Any]:
    summaries = []
    for row in rows:
        sample = DialogueSample.from_extra_info(row.extra_info)
        summaries.append(single_shot_summary(sample.is_target(popularity_pick(row.candidate_item_ids, train_interactions))))
    return _baseline_recommendation(summaries)


def random_recommendation_metrics(rows: Sequence[data_mod.DialogueRow], rng: np.random.Generator) -> dict[str, Any]:
    summaries = []
    for row in rows:
        sample = DialogueSample.from_extra_info(row.extra_info)
        summaries.append(single_shot_summary(sample.is_target(int(rng.integers(len(sample.candidate_titles))))))
    return _baseline_recommendation(summaries)


def expected_random_recommendation(rows: Sequence[data_mod.DialogueRow]) -> dict[str, Any]:
    metrics = _baseline_recommendation([single_shot_summary(False) for _ in rows])
    if rows:
        value = expected_random_hit_at_1(len(row.candidate_titles) for row in rows)
        metrics.update({"hit_at_1": value, "hit_at_1_turn1": value, "target_recommended": value})
    return metrics


def random_user_sim_metrics(rows: Sequence[data_mod.UserSimRow], rng: np.random.Generator, p: float = 0.5) -> dict[str, Any]:
    return user_sim_metrics([[Judgment(label, bool(rng.random() < p)) for label in row.labels] for row in rows])


def run_baselines(
    data_dir: str | Path,
    out_dir: Optional[str | Path] = None,
    *,
    split: str = "test",
    max_samples: Optional[int] = None,
    one_per_user: bool = False,
    max_users: Optional[int] = None,
    seed: int = 0,
    p_yes: float = 0.5,
    tasks: Sequence[str] = data_mod.TASKS,
) -> list[dict[str, Any]]:
    """Compute the baseline results (and write them to ``out_dir`` when given).

    ``tasks`` picks what is scored, so a folder without ``user_sim_<split>.parquet`` (or without
    ``<split>.parquet`` and ``items.parquet``) still gets the other half; popularity needs the dialogues.
    """
    if not 0.0 <= p_yes <= 1.0:
        raise ValueError("p_yes must be in [0, 1]")
    data_mod.check_tasks(tasks)
    dialogues, user_sim = data_mod.TASK_DIALOGUE in tasks, data_mod.TASK_USER_SIM in tasks
    rows = data_mod.load_dialogue_rows(data_dir, split, max_samples, one_per_user) if dialogues else []
    users = data_mod.load_user_sim_rows(data_dir, split, max_users) if user_sim else []
    train = data_mod.load_train_interactions(data_dir) if dialogues else {}
    read = ([data_mod.dialogue_file(data_dir, split), data_mod.items_file(data_dir)] if dialogues else []) + (
        [data_mod.user_sim_file(data_dir, split)] if user_sim else [])
    files = {path.name: data_mod.file_sha256(path) for path in read}
    data = {"dir": str(Path(data_dir).resolve()), "split": split, "files": files}
    config = {"max_samples": max_samples, "one_per_user": one_per_user, "max_users": max_users, "split": split, "tasks": list(tasks)}
    counts = {"dialogues_selected": len(rows), "dialogues_done": len(rows), "users_selected": len(users), "users_done": len(users)}
    # separate streams: the simulated user-sim answers do not depend on the number of dialogue samples
    rec_rng, sim_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    simulated_rec = random_recommendation_metrics(rows, rec_rng) if dialogues else None
    simulated_sim = random_user_sim_metrics(users, sim_rng, p_yes) if user_sim else None
    results = [
        make_result(
            label="random (expected)", kind="baseline", complete=True, model=None, data=data,
            config={**config, "baseline": "random", "p_yes": p_yes, "exact_expectation": True}, counts=counts,
            recommendation=expected_random_recommendation(rows) if dialogues else None,
            user_sim=expected_random_user_sim([row.labels for row in users], p_yes) if user_sim else None,
        ),
        make_result(
            label=f"random (seed {seed})", kind="baseline", complete=True, model=None, data=data,
            config={**config, "baseline": "random", "p_yes": p_yes, "seed": seed}, counts=counts,
            recommendation=simulated_rec, user_sim=simulated_sim,
        ),
    ]
    stems = ["random_expected", f"random_seed{seed}"]
    if dialogues:
        results.append(make_result(
            label="popularity", kind="baseline", complete=True, model=None, data=data,
            config={**config, "baseline": "popularity", "popularity": "items.parquet train_interactions, ties: smallest item id"},
            counts={"dialogues_selected": len(rows), "dialogues_done": len(rows)},
            recommendation=popularity_metrics(rows, train), user_sim=None,
        ))
        stems.append("popularity")
    if out_dir is not None:
        out = Path(out_dir)
        for result, stem in zip(results, stems):
            write_json_atomic(out / f"{stem}.json", result)
            write_text_atomic(out / f"{stem}.md", markdown_single(result))
    return results


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coars_verl.eval.baselines", description="Random and popularity baselines on the evaluation samples.")
    p.add_argument("--data", required=True, help="folder prepared by data_prep")
    p.add_argument("--out", required=True, help="where the result JSON / markdown files go")
    p.add_argument("--split", default="test")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--one-per-user", action="store_true")
    p.add_argument("--max-users", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated random baseline")
    p.add_argument("--p-yes", type=float, default=0.5, help="probability that the random user agent says yes")
    p.add_argument("--tasks", nargs="+", choices=data_mod.TASKS, default=list(data_mod.TASKS),
                   help="dialogue: random and popularity recommendation; user_sim: the random user agent")
    args = p.parse_args(argv)
    try:
        results = run_baselines(
            args.data, args.out, split=args.split, max_samples=args.max_samples, one_per_user=args.one_per_user,
            max_users=args.max_users, seed=args.seed, p_yes=args.p_yes, tasks=args.tasks,
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}; score only what the folder has with --tasks dialogue or --tasks user_sim", file=sys.stderr)
        return 2
    print(markdown_table(results))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
