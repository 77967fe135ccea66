"""End to end on CPU: the evaluation tool on the tiny model and ml-100k (interrupted and resumed),
the baselines on the same samples, the comparison table."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from coars_verl.eval import baselines, table
from coars_verl.eval.cli import main as eval_main
from coars_verl.eval.report import load_result

SMALL = ["--one-per-user", "--max-samples", "8", "--max-users", "4", "--max-turns", "3", "--max-tokens", "16",
         "--batch-size", "8", "--backend", "hf", "--no-progress"]


def jsonl(path):
    return {json.loads(line)["key"]: json.loads(line) for line in path.read_text().splitlines()}


def without_timing(records):
    return {key: {k: v for k, v in rec.items() if k != "s"} for key, rec in records.items()}


@pytest.fixture(scope="module")
def full_run(tiny_model_path, movielens_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "full"
    code = eval_main(["--model", str(tiny_model_path), "--data", str(movielens_dir), "--out", str(out), "--label", "tiny", *SMALL])
    assert code == 0
    return out


def test_tiny_model_end_to_end(full_run):
    result = load_result(full_run / "results.json")
    assert result["complete"] and result["kind"] == "model" and result["label"] == "tiny"
    rec, sim = result["metrics"]["recommendation"], result["metrics"]["user_sim"]
    assert rec["dialogues"] == 8 and sim["users"] == 4 and sim["judgments"] == 40
    assert result["config"]["backend"] == "hf" and result["config"]["max_turns"] == 3
    assert result["model"]["source"] == "hf"
    for key in ("hit_at_1", "hit_at_1_turn1", "valid_ratio", "turns_mean", "f1_micro", "f1_macro"):
        value = rec.get(key, sim.get(key))
        assert value is None or 0.0 <= value <= 3.0
    assert 1.0 <= rec["turns_mean"] <= 3.0
    # each user's last window, 8 users
    dialogues = jsonl(full_run / "dialogue.jsonl")
    assert len(dialogues) == 8 and len({d["user_id"] for d in dialogues.values()}) == 8
    assert all(len(d["summary"]["rec_raw"]) == d["summary"]["turns"] for d in dialogues.values())
    assert "| Hit@1 (%) |" in (full_run / "results.md").read_text()


def test_resume_after_interruption_gives_the_same_totals(full_run, tiny_model_path, movielens_dir, tmp_path):
    out = tmp_path / "resumed"
    args = ["--model", str(tiny_model_path), "--data", str(movielens_dir), "--out", str(out), "--label", "tiny", *SMALL]
    assert eval_main([*args, "--stop-after-batches", "2"]) == 3  # all dialogues (1 batch) and the first user
    partial = load_result(out / "results.json")
    assert not partial["complete"] and partial["counts"]["users_done"] == 1
    assert eval_main(args) == 0
    resumed, full = load_result(out / "results.json"), load_result(full_run / "results.json")
    assert resumed["complete"]
    assert resumed["metrics"] == full["metrics"] and resumed["counts"] == full["counts"]
    for task in ("dialogue", "user_sim"):
        assert without_timing(jsonl(out / f"{task}.jsonl")) == without_timing(jsonl(full_run / f"{task}.jsonl"))
    # other options into the same folder: refused with the difference named
    assert eval_main([*args, "--max-turns", "2"]) == 2


def test_baselines_and_table(full_run, movielens_dir, tmp_path, capsys):
    out = tmp_path / "baselines"
    assert baselines.main(["--data", str(movielens_dir), "--out", str(out), "--one-per-user", "--max-samples", "8", "--max-users", "4"]) == 0
    expected, seeded, popularity = (load_result(out / f"{name}.json") for name in ("random_expected", "random_seed0", "popularity"))
    assert expected["metrics"]["recommendation"]["hit_at_1"] == pytest.approx(1 / 20)  # 20 candidates everywhere
    assert expected["metrics"]["user_sim"]["recall_micro"] == 0.5
    assert popularity["metrics"]["user_sim"] is None
    assert seeded["metrics"]["recommendation"]["dialogues"] == 8

    # popularity Hit@1 computed independently from the parquet files
    frame = pd.read_parquet(movielens_dir / "test.parquet")
    items = pd.read_parquet(movielens_dir / "items.parquet")
    counts = dict(zip(items["item_id"], items["train_interactions"]))
    last = {}
    for info in frame["extra_info"]:
        last[info["user_id"]] = info  # rows are in time order within a user
    chosen = list(last.values())[:8]
    hits = 0
    for info in chosen:
        ids = list(info["candidate_item_ids"])
        best = sorted(ids, key=lambda i: (-counts.get(i, 0), int(i)))[0]
        hits += best == info["target_item_id"]
    assert popularity["metrics"]["recommendation"]["hit_at_1"] == pytest.approx(hits / 8)

    capsys.readouterr()
    assert table.main([str(out / "random_expected.json"), str(out / "popularity.json"), str(full_run), "--out", str(tmp_path / "t.md")]) == 0
    printed = capsys.readouterr().out
    lines = printed.strip().splitlines()
    assert lines[0].startswith("| method | dialogues | Hit@1 (%)")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["random (expected)", "popularity", "tiny"]
    assert "| 5.00 |" in lines[2]
    assert (tmp_path / "t.md").read_text() == printed
    assert table.main([str(tmp_path / "missing.json")]) == 2


def test_module_entry_points():
    for module in ("coars_verl.eval", "coars_verl.eval.baselines", "coars_verl.eval.table"):
        run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and "usage" in run.stdout, run.stderr
