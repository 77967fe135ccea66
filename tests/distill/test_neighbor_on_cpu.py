"""The ``neighbor`` teacher-context source: other users' dialogues, ranked by shared history items.

A fixture with known overlaps: u2 shares 3 items with u1, u3 shares 1, u4 shares none. Each test
names the wrong version it catches (no overlap found, the user's own dialogues shown, an order
that depends on insertion, a memory restored without histories).
"""


from coars_verl.distill.config import SelfDistillConfig
from coars_verl.constants import ROLE_RECOMMENDER, ROLE_USER
from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.batch_contexts import StudentSample, batch_teacher_prompts
from coars_verl.distill.contexts import teacher_source, teacher_source_names
from coars_verl.distill.memory import DialogueMemory, compact_record

from distill_fakes import context, first_context

U1_HISTORY = ["i1", "i2", "i3", "i4"]


def overlapping_users_text(role, user_id, memory, history, k=2, before_step=None):
    """The neighbor source reads the user, the memory and the history, not the sample's own dialogue (an empty one here)."""
    return context("neighbor", role, Transcript(user_id, "", "", max_turns=1), memory=memory, item_history=history, memory_k=k,
                   step=before_step)
HISTORIES = {"u2": ["i1", "i2", "i3", "i9"], "u3": ["i4", "i7"], "u4": ["i8", "i9"]}


def memory_with_neighbors(hit_summary, miss_summary, step=0):
    memory = DialogueMemory()
    for uid, history in HISTORIES.items():
        memory.add(uid, compact_record({**(hit_summary if uid == "u2" else miss_summary), "user_id": uid}), step)
        memory.set_item_history(uid, history)
    memory.add("u1", compact_record(miss_summary), step)  # the user's own dialogue: never a neighbour
    memory.set_item_history("u1", U1_HISTORY)
    return memory


def test_neighbors_are_ranked_by_shared_items_and_exclude_the_user(hit_summary, miss_summary):
    memory = memory_with_neighbors(hit_summary, miss_summary)
    assert memory.neighbors("u1", U1_HISTORY, k=5) == [("u2", 3), ("u3", 1)]
    assert memory.neighbors("u1", U1_HISTORY, k=1) == [("u2", 3)]
    assert memory.neighbors("u5", ["i8"], k=5) == [("u4", 1)]
    assert memory.neighbors("u5", ["x", "y"], k=5) == []  # no overlap, nothing
    assert memory.neighbors("u2", HISTORIES["u2"], k=5, before_step=0) == []  # only earlier steps count


def test_ties_are_broken_by_share_then_id_whatever_the_insertion_order(hit_summary, miss_summary):
    for order in (["a", "b", "c"], ["c", "b", "a"]):
        memory = DialogueMemory()
        histories = {"a": ["i1", "x1", "x2"], "b": ["i1"], "c": ["i1"]}
        for uid in order:
            memory.add(uid, compact_record(miss_summary), 0)
            memory.set_item_history(uid, histories[uid])
        # b and c share all of their (one-item) history, a a third of its: b, c (id order), then a
        assert memory.neighbors("q", ["i1"], k=3) == [("b", 1), ("c", 1), ("a", 1)]


def test_histories_leave_with_their_users_and_survive_a_checkpoint(tmp_path, hit_summary, miss_summary):
    memory = DialogueMemory(max_users=2)
    for uid, history in HISTORIES.items():  # u2, u3, u4: u2 is evicted by u4
        memory.add(uid, compact_record(miss_summary), 0)
        memory.set_item_history(uid, history)
    assert memory.item_history("u2") == () and memory.neighbors("q", ["i1", "i2"], k=5) == []
    memory.save(tmp_path / "memory.json")
    restored = DialogueMemory(max_users=2)
    restored.load(tmp_path / "memory.json")
    assert restored.state_dict() == memory.state_dict()
    assert restored.neighbors("q", ["i4", "i8"], k=5) == [("u3", 1), ("u4", 1)]
    # a v1 state (before histories) still loads, with no neighbours
    v1 = {**memory.state_dict(), "format": "coars_dialogue_memory/v1"}
    v1.pop("histories")
    old = DialogueMemory()
    old.load_state_dict(v1)
    assert old.users() == memory.users() and old.neighbors("q", ["i4"], k=5) == []


def test_the_context_shows_what_neighbours_accepted_and_rejected_and_why(hit_summary, miss_summary):
    memory = memory_with_neighbors(hit_summary, miss_summary)
    text = overlapping_users_text(ROLE_RECOMMENDER, "u1", memory, U1_HISTORY, k=2, before_step=1)
    lines = text.splitlines()
    assert lines[0].startswith("Earlier dialogues with other users whose histories overlap")
    assert lines[1] == ('- A user sharing 3 history items: that user rejected "Titanic" (I avoid romance); '
                        'that user accepted "Alien", which was the item they wanted.')
    assert lines[2].startswith("- A user sharing 1 history item: that user rejected \"Toy Story\" (too childish for me)")
    assert "u1" not in text and "Heat" in lines[2]  # u3's own miss; u1's dialogue is not shown
    assert overlapping_users_text(ROLE_USER, "u1", memory, U1_HISTORY).startswith("Earlier conversations of other users")
    assert overlapping_users_text(ROLE_RECOMMENDER, "u1", memory, ["nothing-shared"]) is None
    assert overlapping_users_text(ROLE_RECOMMENDER, "u1", memory, None) is None
    assert overlapping_users_text(ROLE_RECOMMENDER, "u1", None, U1_HISTORY) is None


def test_selectable_and_ordered_like_the_other_sources(hit_summary, miss_summary):
    assert "neighbor" in teacher_source_names() and "neighbor" not in SelfDistillConfig().sources
    assert teacher_source("neighbor").user_only  # the evaluation's memory baseline may use it
    assert SelfDistillConfig.from_mapping({"sources": ["neighbor", "hindsight"]}).sources == ("neighbor", "hindsight")
    memory = memory_with_neighbors(hit_summary, miss_summary)
    text, source = first_context(ROLE_RECOMMENDER, miss_summary, ["neighbor", "hindsight"], memory=memory, step=1,
                                 item_history=U1_HISTORY)
    assert source == "neighbor" and "sharing 3 history items" in text
    _, source = first_context(ROLE_RECOMMENDER, miss_summary, ["neighbor", "hindsight"], memory=memory, step=1,
                              item_history=["none"])
    assert source == "hindsight"  # no overlap: the next source


def test_the_batch_builder_passes_each_sample_its_own_history(hit_summary, miss_summary):
    """Two samples of different users: one overlaps u2, one nobody; only the first gets a neighbour."""
    memory = memory_with_neighbors(hit_summary, miss_summary)
    cfg = SelfDistillConfig(sources=("neighbor",))
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]

    def render(msgs):
        return [ord(c) for m in msgs for c in m["content"]]

    samples = [
        StudentSample(uid=uid, role=ROLE_RECOMMENDER, reward=0.0, messages=messages, prompt_ids=render(messages),
                      transcript=Transcript.from_summary({**miss_summary, "user_id": user}), memory_key=user, item_history=history)
        for uid, user, history in (("p1", "u9", ["i1", "i2"]), ("p2", "u8", ["zzz"]))
    ]
    out = batch_teacher_prompts(samples, render, cfg, memory=memory, step=1)
    assert out.sources == {0: "neighbor"}
    assert "sharing 2 history items" in "".join(map(chr, out.prompts[0]))
