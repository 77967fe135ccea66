"""The RecZero-style baseline: its reward (outcome minus a format penalty) and its data rows.

Catches: a hit scored without naming the target, the format penalty ignored or applied to a
well-formed answer, tags accepted out of order or empty, rows whose prompt is not the one the
evaluation renders for the same sample.
"""

import pandas as pd
import pytest

from coars_verl.datasets.reczero import RECZERO_PROMPTS, reczero_frame, write_reczero
from coars_verl.dialogue.prompts import PromptTemplates, load_prompt_overrides, recommender_initial_messages
from coars_verl.rewards.reczero import compute_score, reasoning_in_tags

INFO = {"candidate_titles": ["Heat", "Up", "Jaws"], "history_titles": ["Alien"], "user_id": "u", "index": 0, "split": "train"}
GOOD = "<analyze user>likes thrillers</analyze user>\n<match>Jaws is a thriller</match>\nItem: Jaws"


def score(text, target="Jaws", **kwargs):
    return compute_score("reczero/test", text, target, INFO, **kwargs)


def test_outcome_minus_format_penalty():
    assert score(GOOD) == {"score": 1.0, "hit": 1.0, "valid": 1.0, "format_ok": 1.0}
    assert score(GOOD, target="Heat")["score"] == 0.0  # well formed, wrong item: no penalty
    assert score("Item: 3")["score"] == pytest.approx(1.0 - 0.1)  # a hit (candidate number) without the reasoning
    assert score("Item: 3", format_penalty=0.5)["score"] == pytest.approx(0.5)
    nothing = score("<analyze user>x</analyze user><match>y</match>\nItem: Titanic")
    assert nothing == {"score": -0.1, "hit": 0.0, "valid": 0.0, "format_ok": 0.0}


def test_reasoning_tags_in_order_non_empty_before_the_item():
    assert reasoning_in_tags(GOOD)
    assert not reasoning_in_tags("<match>m</match><analyze user>a</analyze user>\nItem: Jaws")  # out of order
    assert not reasoning_in_tags("<analyze user> </analyze user><match>m</match>\nItem: Jaws")  # empty
    assert not reasoning_in_tags("<analyze user>a</analyze user>\nItem: Jaws\n<match>m</match>")  # after the item
    assert reasoning_in_tags("<ANALYZE USER>a</ANALYZE USER>\n<match>m\nmore</match>\nItem: Jaws")


def test_missing_candidates_are_a_named_error():
    with pytest.raises(ValueError, match="candidate_titles"):
        compute_score("reczero/x", GOOD, "Jaws", {})


def test_rows_keep_the_samples_and_carry_the_prompt_the_evaluation_renders(tmp_path):
    source = pd.DataFrame([{"data_source": "movielens", "prompt": [{"role": "user", "content": "dialogue prompt"}],
                            "ability": "recommendation", "reward_model": {"style": "rule", "ground_truth": "Jaws"},
                            "agent_name": "coars_dialogue", "extra_info": INFO}])
    (tmp_path / "data").mkdir()
    source.to_parquet(tmp_path / "data" / "train.parquet")
    source.to_parquet(tmp_path / "data" / "test.parquet")
    assert write_reczero(tmp_path / "data") == {"train.parquet": 1, "test.parquet": 1}
    rows = pd.read_parquet(tmp_path / "data" / "reczero" / "train.parquet")
    assert "agent_name" not in rows.columns  # verl's own single-turn agent loop
    templates = PromptTemplates.from_overrides(load_prompt_overrides(RECZERO_PROMPTS))
    expected = recommender_initial_messages(["Alien"], ["Heat", "Up", "Jaws"], templates)
    assert [dict(m) for m in rows.loc[0, "prompt"]] == expected
    assert "<analyze user>" in expected[0]["content"] and "1. Heat" in expected[1]["content"]
    assert rows.loc[0, "reward_model"]["ground_truth"] == "Jaws" and rows.loc[0, "data_source"] == "reczero/movielens"
    assert list(rows.loc[0, "extra_info"]["candidate_titles"]) == INFO["candidate_titles"]


def test_a_folder_without_split_files_or_a_row_without_history_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_prep"):
        write_reczero(tmp_path)
    bad = pd.DataFrame([{"data_source": "d", "reward_model": {"ground_truth": "x"}, "extra_info": {"candidate_titles": ["x"]}}])
    with pytest.raises(ValueError, match="row 0: extra_info lacks 'history_titles'"):
        reczero_frame(bad, PromptTemplates(), source="f.parquet")
