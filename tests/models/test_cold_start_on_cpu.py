"""The learning task's cold start: what the scripted policy demonstrates, and what the build reads."""

from collections import Counter

import pyarrow.parquet as pq
import pytest

from coars_verl.datasets.learning_task import LearningTaskConfig, generate
from coars_verl.datasets.pipeline import write_outputs
from coars_verl.dialogue.parsers import parse_decision
from coars_verl.dialogue.prompts import PromptTemplates
from coars_verl.dialogue.state import DialogueConfig
from coars_verl.dialogue.prompts import load_prompt_overrides
from coars_verl.models.cold_start import cold_start_options, demonstrations, logged_bias_item
from coars_verl.cpu.launch import RECIPES_DIR

PROMPTS = load_prompt_overrides(RECIPES_DIR / "prompts" / "compact.yaml")
CONFIG = DialogueConfig(max_turns=3, templates=PromptTemplates.from_overrides(PROMPTS))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    out = tmp_path_factory.mktemp("cold") / "task"
    write_outputs(generate(LearningTaskConfig(train_users=300, valid_users=10, test_users=10, num_candidates=10)), out, quiet=True)
    return {split: pq.read_table(out / f"{split}.parquet").column("extra_info").to_pylist() for split in ("train", "test")}


def _row_of(rows, messages):
    """The data row whose whole history block is in the agent's first task message."""
    task = messages[1]["content"]
    found = [r for r in rows if "\n".join(f"- {t}" for t in r["history_titles"]) in task]
    assert len(found) == 1
    return found[0]


def _item(answer):
    return answer.rsplit("Item: ", 1)[1]


def test_the_logged_policy_is_right_at_its_rate_and_otherwise_biased(task):
    rows = task["train"]
    examples = demonstrations(rows, CONFIG, logged_hit_rate=0.2, seed=0)
    recommender = [(m, a) for m, a in examples if a.rsplit("\n", 1)[-1].startswith("Item: ")]
    hits = 0
    for messages, answer in recommender:
        row = _row_of(rows, messages)
        item = _item(answer)
        if item == row["target_title"]:
            hits += 1
        else:
            assert item == logged_bias_item(row["history_titles"]) == row["history_titles"][-1]
            assert item in row["history_titles"] and item not in row["candidate_titles"]  # never a valid candidate
        genre, noun = item.split(" ")
        assert answer.startswith(f"Reason: you like {genre} and {noun}.")
    assert 0.12 < hits / len(recommender) < 0.28


def test_the_user_agent_is_shown_the_truth_and_says_why(task):
    rows = task["train"][:100]
    examples = demonstrations(rows, CONFIG, logged_hit_rate=0.5, seed=1)
    users = [(m, a) for m, a in examples if "Decision:" in a]
    decisions = Counter()
    for messages, answer in users:
        suggested = [line for m in messages for line in m["content"].splitlines() if line.startswith("Suggested: ")][-1]
        item = suggested.removeprefix("Suggested: ")
        row = _row_of(rows, messages)
        accepted = parse_decision(answer).accepted
        assert accepted == (item == row["target_title"])
        genre, noun = row["target_title"].split(" ")
        if not accepted:  # the reason names the half of the item that was wrong: feedback for the next turn
            liked = genre if item.split(" ")[0] != genre else noun
            assert f"I like {liked} more." in answer
        decisions[accepted] += 1
    assert decisions[True] > 50 and decisions[False] > 50  # dialogues and user-simulation questions, both answers


def test_demonstrations_are_deterministic_and_use_only_the_rows_given(task):
    first = demonstrations(task["train"][:50], CONFIG, 0.2, seed=3)
    assert first == demonstrations(task["train"][:50], CONFIG, 0.2, seed=3)
    test_histories = {t for r in task["test"] for t in [r["history_titles"][0] + "\n" + r["history_titles"][1]]}
    text = "\n".join(m["content"] for messages, _ in first for m in messages)
    assert not any(h in text for h in test_histories)


def test_options_are_checked():
    assert cold_start_options(steps=5)["steps"] == 5
    with pytest.raises(TypeError, match="unknown option"):
        cold_start_options(stepz=5)
    with pytest.raises(ValueError, match="logged_hit_rate"):
        cold_start_options(logged_hit_rate=1.5)
