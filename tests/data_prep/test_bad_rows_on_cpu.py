"""A data file with a row that cannot be played fails in the driver, naming the file, the row and the
field, before Ray starts any worker (it used to fail inside an agent-loop worker, behind verl's
replay-buffer message)."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from coars_verl.composition import config_problems
from coars_verl.datasets.row_check import dialogue_row_problems
from coars_verl.recipes import RECIPES_DIR


def good_extra_info(i):
    return {"user_id": f"u{i}", "history_titles": ["Heat", "Alien"], "history_item_ids": ["1", "2"],
            "candidate_titles": ["Fargo", "Babe", "Up"], "candidate_item_ids": ["3", "4", "5"],
            "target_title": "Babe", "target_item_id": "4", "split": "train", "index": i}


def write(path, extra_infos, agent_name="coars_dialogue"):
    rows = [{"data_source": "coars/test", "prompt": [{"role": "user", "content": "recommend"}], "ability": "recommendation",
             "reward_model": {"style": "rule", "ground_truth": "Babe"}, "agent_name": agent_name, "extra_info": extra_info}
            for extra_info in extra_infos]
    pd.DataFrame(rows).to_parquet(path)
    return path


BAD_ROWS = {
    "missing candidate list": ({"candidate_titles": None, "candidate_item_ids": None}, "missing field 'candidate_titles'"),
    "empty candidate list": ({"candidate_titles": [], "candidate_item_ids": []}, "the candidate list is empty"),
    "target outside the candidates": ({"target_title": "Nope", "target_item_id": "99"}, "is not among the candidates"),
    "empty history": ({"history_titles": [], "history_item_ids": []}, "'history_titles']: the history is empty"),
    "a candidate that is not a title": ({"candidate_titles": ["Fargo", "", "Up"]}, "candidate_titles[1]"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_named_with_its_file_row_and_field(tmp_path, case):
    change, message = BAD_ROWS[case]
    path = write(tmp_path / "train.parquet", [good_extra_info(0), {**good_extra_info(1), **change}, good_extra_info(2)])
    problems = dialogue_row_problems([str(path)], None)
    assert len(problems) == 1 and problems[0].startswith(f"{path}: row 1: ") and message in problems[0], problems


def test_an_extra_info_that_is_not_a_mapping_is_named(tmp_path):
    path = write(tmp_path / "valid.parquet", [json.dumps(good_extra_info(0))])
    problems = dialogue_row_problems([str(path)], None)
    assert problems == [f"{path}: row 0: extra_info: expected a mapping, got str"]


def test_good_rows_rows_of_other_agent_loops_and_remote_files_pass(tmp_path):
    good = write(tmp_path / "good.parquet", [good_extra_info(i) for i in range(3)])
    other = write(tmp_path / "other.parquet", [{**good_extra_info(0), "candidate_titles": []}], agent_name="single_turn_agent")
    assert dialogue_row_problems([str(good), str(other), "hdfs://remote/train.parquet", str(tmp_path / "later.parquet")], None) == []


def test_many_bad_rows_are_counted_not_all_listed(tmp_path):
    path = write(tmp_path / "train.parquet", [{**good_extra_info(i), "history_titles": []} for i in range(8)])
    problems = dialogue_row_problems([str(path)], None)
    assert len(problems) == 6 and problems[-1] == f"{path}: 3 more bad rows (of 8)"


def test_main_ppo_stops_in_the_driver_before_ray_starts(tmp_path):
    train = write(tmp_path / "train.parquet", [good_extra_info(0), {**good_extra_info(1), "target_title": "Nope", "target_item_id": ""}])
    valid = write(tmp_path / "valid.parquet", [good_extra_info(0)])
    env = {**os.environ, "VERL_PLATFORM": "cpu", "RAY_ADDRESS": "local"}
    run = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(RECIPES_DIR), "--config-name", "cpu_coars_tiny",
         "actor_rollout_ref.model.path=/models/m", f"data.train_files={train}", f"data.val_files={valid}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"{train}: row 1: target_title/target_item_id: the target ('Nope'" in output, output[-3000:]
    assert "Started a local Ray instance" not in output and "TaskRunner" not in output


def test_the_doctor_and_the_driver_share_the_check(tmp_path):
    path = write(tmp_path / "train.parquet", [{**good_extra_info(0), "history_titles": []}])
    config = {"data": {"train_files": str(path), "val_files": []}}
    assert any("row 0" in p for p in config_problems(config, on_cpu=False, machine_cpus=2))
