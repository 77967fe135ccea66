"""DialogueMemory: bounds, per-user selection, determinism, persistence."""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coars_verl.distill.memory import DialogueMemory, compact_record

from distill_fakes import played


def test_compact_record(miss_summary, hit_summary):
    rec = compact_record(miss_summary)
    assert rec == {
        "rejected": [{"item": "Toy Story", "reason": "too childish for me"}, {"item": "Titanic", "reason": "I avoid romance"}],
        "accepted": "Heat", "hit": False, "turns": 4, "invalid_turns": 1, "final_item": "Heat",
    }
    assert "Alien" not in json.dumps(rec)  # the ground truth is never stored
    assert compact_record(hit_summary)["accepted"] == "Alien" and compact_record(hit_summary)["hit"] is True
    long_reason = played("u1", [("Titanic", "r", "no", "y" * 500)], max_turns=1)
    assert compact_record(long_reason, max_reason_chars=10)["rejected"][0]["reason"] == "y" * 9 + "…"


def test_bounded_per_user_keeps_the_newest():
    mem = DialogueMemory(max_per_user=3, max_users=10)
    for step in range(6):
        mem.add("u1", {"n": step}, step=step)
    mem.add("u2", {"n": 100}, step=0)
    assert mem.num_records() == 4
    assert [r["n"] for r in mem.select("u1", k=10)] == [5, 4, 3]  # newest first
    assert [r["step"] for r in mem.select("u1", k=2)] == [5, 4]
    assert mem.select("u2", k=5) == [{"n": 100, "step": 0}]
    assert mem.select("nobody", k=5) == [] and mem.select("u1", k=0) == []


def test_select_before_step_excludes_the_current_step():
    mem = DialogueMemory()
    mem.add("u", {"n": 1}, step=1)
    mem.add("u", {"n": 2}, step=2)
    mem.add("u", {"n": 3}, step=2)
    assert [r["n"] for r in mem.select("u", k=5, before_step=2)] == [1]
    assert [r["n"] for r in mem.select("u", k=5, before_step=3)] == [3, 2, 1]
    assert mem.select("u", k=5, before_step=1) == []


def test_out_of_order_steps_are_sorted_and_oldest_evicted():
    mem = DialogueMemory(max_per_user=2)
    mem.add("u", {"n": "s5"}, step=5)
    mem.add("u", {"n": "s3"}, step=3)
    assert [r["n"] for r in mem.select("u", k=2)] == ["s5", "s3"]
    mem.add("u", {"n": "s4"}, step=4)
    assert [r["n"] for r in mem.select("u", k=2)] == ["s5", "s4"]


def test_max_users_evicts_the_least_recently_added_user():
    mem = DialogueMemory(max_per_user=2, max_users=2)
    mem.add("a", {}, step=0)
    mem.add("b", {}, step=0)
    mem.select("a", k=1)  # reads do not count
    mem.add("a", {}, step=1)  # a is now the most recently added
    mem.add("c", {}, step=1)
    assert mem.users() == ["a", "c"] and "b" not in mem and len(mem) == 2


def test_user_ids_are_normalised_and_records_copied():
    mem = DialogueMemory()
    rec = {"rejected": [{"item": "x", "reason": "r"}]}
    mem.add(7, rec, step=0)
    rec["rejected"].append("mutated")
    got = mem.select("7", k=1)
    assert got[0]["rejected"] == [{"item": "x", "reason": "r"}]
    got[0]["rejected"].clear()
    assert mem.select(7, k=1)[0]["rejected"] == [{"item": "x", "reason": "r"}]
    with pytest.raises(TypeError):
        mem.add("u", {"bad": object()}, step=0)
    with pytest.raises(ValueError):
        DialogueMemory(max_per_user=0)


def test_save_load_round_trip(tmp_path, miss_summary, hit_summary):
    mem = DialogueMemory(max_per_user=3, max_users=5)
    for step, s in enumerate([miss_summary, hit_summary, miss_summary]):
        mem.add(s["user_id"], compact_record(s), step)
    mem.add("u2", compact_record(hit_summary), 9)
    path = tmp_path / "ckpt" / "memory.json"
    mem.save(path)
    assert sorted(os.listdir(path.parent)) == ["memory.json"]  # no temp file left behind
    restored = DialogueMemory(max_per_user=3, max_users=5)
    restored.load(path)
    assert restored.state_dict() == mem.state_dict()
    assert restored.select("u1", 2) == mem.select("u1", 2)
    json.dumps(mem.state_dict())  # JSON-serialisable
    # overwrite is atomic too and replaces the content
    mem.add("u3", {}, 10)
    mem.save(path)
    restored.load(path)
    assert restored.state_dict() == mem.state_dict()


def test_load_with_smaller_limits_trims_deterministically():
    mem = DialogueMemory(max_per_user=4, max_users=3)
    for i, uid in enumerate(["a", "b", "c"]):
        for step in range(4):
            mem.add(uid, {"i": i}, step)
    small = DialogueMemory(max_per_user=2, max_users=2)
    small.load_state_dict(mem.state_dict())
    assert small.users() == ["b", "c"]
    assert [r["step"] for r in small.select("c", 5)] == [3, 2]
    with pytest.raises(ValueError, match="format"):
        small.load_state_dict({"users": []})


OPS = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 20), st.integers(0, 3)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(OPS, st.integers(1, 4), st.integers(1, 4))
def test_invariants_and_determinism(ops, per_user, max_users):
    def build():
        mem = DialogueMemory(max_per_user=per_user, max_users=max_users)
        for uid, step, payload in ops:
            mem.add(uid, {"payload": payload}, step)
        return mem

    mem = build()
    assert len(mem) <= max_users
    for uid in mem.users():
        recs = mem.select(uid, k=100)
        assert 1 <= len(recs) <= per_user
        assert [r["step"] for r in recs] == sorted((r["step"] for r in recs), reverse=True)
    assert build().state_dict() == mem.state_dict()
    clone = DialogueMemory(max_per_user=per_user, max_users=max_users)
    clone.load_state_dict(json.loads(json.dumps(mem.state_dict())))
    assert clone.state_dict() == mem.state_dict()


def test_samples_without_a_user_id_are_never_pooled():
    mem = DialogueMemory()
    for step, uid in enumerate(["", " ", None]):
        mem.add(uid, {"n": step}, step=step)
    assert mem.num_records() == 0
    assert mem.select("", k=5) == [] and mem.select(None, k=5) == []
    mem.add("u", {"n": 9}, step=1)
    assert mem.select("u", k=5) == [{"n": 9, "step": 1}]
