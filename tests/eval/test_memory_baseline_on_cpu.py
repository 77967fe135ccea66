"""The Reflexion-style baseline: each test user's earlier dialogue, played by the same model on the
validation split (or loaded from a saved memory), is shown in the recommender's prompt.

Fails when the feature is switched off (the memory text is not in the prompt), when the memory is
played on the wrong users or split, or when one user's memory reaches another user's prompt.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from coars_verl.dialogue.transcript import Transcript, TurnRecord
from coars_verl.distill.memory import DialogueMemory, compact_record
from coars_verl.eval.evaluate import EvalOptions, evaluate
from coars_verl.eval.memory_baseline import MemorySetting

from eval_fakes import TEMPLATES, ByteCodec, ScriptedBackend, first_candidate_policy, role_of

HEADER = "Notes from earlier dialogues with this user"


def with_valid_split(data):
    """valid.parquet: each user's window before the test windows, with its own split tag and index."""
    frame = pd.read_parquet(data / "test.parquet")
    frame["extra_info"] = [{**info, "split": "valid"} for info in frame["extra_info"]]
    frame.to_parquet(data / "valid.parquet")
    return data


def evaluate_with(data, out, memory=MemorySetting(), **overrides):
    backend = ScriptedBackend(first_candidate_policy(yes_to="Film C"))
    values = dict(model="scripted-model", data=str(data), max_turns=3, max_tokens=500, batch_size=3, label="scripted",
                  tasks=("dialogue",), one_per_user=True, memory=memory)
    values.update(overrides)
    return evaluate(EvalOptions(**values), out, backend=backend, codec=ByteCodec(), progress=False), backend


def first_recommender_prompts(backend):
    """System messages of the recommender's first prompt of each test dialogue (after the memory's)."""
    return [m[0]["content"] for m in backend.prompts if role_of(m) == "recommender" and len(m) == 2]


def test_the_memory_is_in_the_recommenders_prompt_and_only_when_asked(small_data, tmp_path):
    data = with_valid_split(small_data)
    result, backend = evaluate_with(data, tmp_path / "memory", MemorySetting(split="valid"))
    prompts = first_recommender_prompts(backend)
    # 5 memory dialogues (one per user, valid split) then 5 test dialogues; only the test ones carry memory
    assert len(prompts) == 10
    assert [HEADER in p for p in prompts] == [False] * 5 + [True] * 5
    assert all(p.startswith(TEMPLATES.recommender_system + "\n\n" + HEADER) for p in prompts[5:])
    assert result["counts"]["dialogues_with_memory"] == 5 and result["label"] == "scripted"
    records = [json.loads(line) for line in (tmp_path / "memory" / "dialogue.jsonl").read_text().splitlines()]
    # the memory tells the user's own last validation dialogue: candidate 1 first (rejected, or
    # accepted when it is "Film C", the scripted user's only yes)
    last_valid = {info["user_id"]: info["candidate_titles"][0] for info in pd.read_parquet(data / "valid.parquet")["extra_info"]}
    for record in records:
        first = last_valid[record["user_id"]]
        said = f'the user accepted "{first}"' if first == "Film C" else f'the user rejected "{first}"'
        assert record["memory_context"].splitlines()[1].startswith(f"- Dialogue before this one: {said}")
    assert (tmp_path / "memory" / "memory.json").exists()
    again, backend = evaluate_with(data, tmp_path / "memory", MemorySetting(split="valid"))  # a resumed run: nothing to play
    assert again["metrics"] == result["metrics"] and backend.prompts == []

    off, backend = evaluate_with(data, tmp_path / "off")
    assert not any(HEADER in p for p in first_recommender_prompts(backend))
    assert "dialogues_with_memory" not in off["counts"]


def test_a_saved_memory_reaches_only_its_user(small_data, tmp_path):
    memory = DialogueMemory()
    rejected_z = Transcript("3", "Film A", "100", max_turns=1, end_reason="max_turns", turns=(
        TurnRecord(1, "Item: Film Z", 0, "Film Z", "9", "", "", "", valid=True, is_target=False, user_decision=0, user_reason="too long"),))
    memory.add("3", compact_record(rejected_z), step=7)
    memory.save(tmp_path / "coars_memory.json")
    result, backend = evaluate_with(small_data, tmp_path / "saved", MemorySetting(file=str(tmp_path / "coars_memory.json")))
    prompts = first_recommender_prompts(backend)
    assert sum(HEADER in p for p in prompts) == 1 and result["counts"]["dialogues_with_memory"] == 1
    records = {json.loads(l)["user_id"]: json.loads(l) for l in (tmp_path / "saved" / "dialogue.jsonl").read_text().splitlines()}
    assert 'rejected "Film Z" (too long)' in records["3"]["memory_context"] and records["1"]["memory_context"] is None


def test_the_neighbor_source_shows_other_users(small_data, tmp_path):
    data = with_valid_split(small_data)  # every user has history h0, h1, h2: all overlap
    result, _ = evaluate_with(data, tmp_path / "neighbor", MemorySetting(split="valid", sources=("neighbor",), k=1))
    records = [json.loads(l) for l in (tmp_path / "neighbor" / "dialogue.jsonl").read_text().splitlines()]
    assert result["counts"]["dialogues_with_memory"] == 5
    assert all(r["memory_context"].startswith("Earlier dialogues with other users whose histories overlap") for r in records)
    assert all("sharing 3 history items" in r["memory_context"] for r in records)


def test_memory_options_are_checked(small_data, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        evaluate_with(small_data, tmp_path / "x", MemorySetting(split="valid", file="m.json"))
    with pytest.raises(ValueError, match="sibling"):
        evaluate_with(small_data, tmp_path / "x", MemorySetting(split="valid", sources=("sibling",)))
    with pytest.raises(ValueError, match="dialogue task"):
        evaluate_with(small_data, tmp_path / "x", MemorySetting(split="valid"), tasks=("user_sim",))
