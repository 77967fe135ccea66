"""The registered teacher-context sources on played dialogues' summaries (fixtures in conftest.py)."""

import pytest

from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.context_text import fit_budget
from coars_verl.distill.contexts import DEFAULT_SOURCES, GroupMember
from coars_verl.distill.memory import DialogueMemory, compact_record
from coars_verl.distill.sources.sibling import best_hit_sibling

from distill_fakes import context, first_context, played


def user_notes(role, user_id, mem, k=2, before_step=None):
    """The memory source reads the user's memory, not the sample's own dialogue (an empty one here)."""
    return context("memory", role, Transcript(user_id, "", "", max_turns=1), memory=mem, memory_k=k, step=before_step)


def better_sibling_text(role, dialogue, group, position):
    return context("sibling", role, dialogue, group=group, position=position)


def whole_dialogue_text(role, dialogue, max_chars=1000):
    return context("hindsight", role, dialogue, max_chars=max_chars)


def target_item_text(role, dialogue):
    return context("target", role, dialogue)


def first_source(role, dialogue, sources=None, memory=None, group=None, self_index=0, step=None, max_chars=1000):
    return first_context(role, dialogue, sources, memory=memory, group=group, position=self_index, step=step, max_chars=max_chars)


def best_hit_index(group, position):
    return best_hit_sibling([GroupMember(reward, Transcript.read(d)) for d, reward in group], position)

REC, USER = "recommender", "user"


def test_the_transcript_gives_what_the_contexts_read(miss_summary):
    transcript = Transcript.from_summary(miss_summary)
    assert transcript.user_id == "u1" and transcript.num_turns == 4 and not transcript.hit and transcript.target_title == "Alien"
    assert [r.rec_item_title for r in transcript.rejected_turns] == ["Toy Story", "Titanic"]
    assert transcript.accepted_turn.rec_item_title == "Heat"
    assert transcript.turns[1].valid is False and transcript.turns[1].answer is None
    assert [r.answer for r in transcript.turns] == ["no", None, "no", "yes"]
    assert Transcript.read(transcript) is transcript


# ------------------------------------------------------------------------------ memory
def test_memory_notes(miss_summary, hit_summary):
    mem = DialogueMemory()
    mem.add("u1", compact_record(miss_summary), step=3)
    mem.add("u1", compact_record(hit_summary), step=5)
    mem.add("u9", compact_record(hit_summary), step=4)
    text = user_notes(REC, "u1", mem, k=2, before_step=6)
    lines = text.split("\n")
    assert lines[0] == "Notes from earlier dialogues with this user (most recent first):"
    assert lines[1].startswith("- Dialogue at training step 5: ") and '"Alien", which was the item they wanted' in lines[1]
    assert lines[2] == ('- Dialogue at training step 3: the user rejected "Toy Story" (too childish for me); the user '
                        'rejected "Titanic" (I avoid romance); 1 turn lost to invalid answers; the user accepted '
                        '"Heat", but it was not the item they wanted.')
    user_text = user_notes(USER, "u1", mem, k=1, before_step=6)
    assert user_text.split("\n")[0].startswith("Notes from your earlier conversations")
    assert 'you rejected "Titanic" (I avoid romance)' in user_text and "you accepted \"Alien\"" in user_text
    assert "step 3" not in user_text  # k=1
    # only earlier steps; no store; unknown user
    assert "step 5" not in user_notes(REC, "u1", mem, before_step=5)
    assert user_notes(REC, "u1", mem, before_step=3) is None
    assert user_notes(REC, "u1", None) is None
    assert user_notes(REC, "nobody", mem) is None


def test_memory_notes_never_name_an_unseen_target(miss_summary):
    mem = DialogueMemory()
    mem.add("u1", compact_record(miss_summary), step=0)
    assert "Alien" not in user_notes(REC, "u1", mem)


# ----------------------------------------------------------------------------- sibling
def test_best_sibling_rule(miss_summary, hit_summary, hit_turn1_summary):
    group = [(miss_summary, 0.0), (hit_summary, 1.31), (hit_turn1_summary, 1.5), (hit_turn1_summary, 1.5)]
    assert best_hit_index(group, 0) == 2  # highest reward; tie 2 vs 3 -> lowest index
    assert best_hit_index(group, 1) == 2
    assert best_hit_index(group, 2) is None  # the only better-or-equal one is a tie: not strictly better
    assert best_hit_index(group, 3) is None  # never itself
    # a better reward without a hit does not count
    assert best_hit_index([(hit_summary, 0.1), (miss_summary, 0.9)], 0) is None
    assert best_hit_index([(miss_summary, 0.0)], 0) is None
    with pytest.raises(IndexError):
        best_hit_index(group, 4)


def test_better_sibling(miss_summary, hit_summary):
    group = [(miss_summary, 0.2), (hit_summary, 1.3)]
    text = better_sibling_text(REC, miss_summary, group, 0)
    assert text.split("\n") == [
        "Another attempt with this same user and the same candidates went better. How it went:",
        'Turn 1: you recommended "Titanic" (reason: popular drama); the user said no: I avoid romance',
        'Turn 2: you recommended "Alien" (reason: you watched Aliens); the user said yes: sci-fi horror is my thing',
        'Outcome: the user accepted "Alien", which was the item they wanted.',
    ]
    user_text = better_sibling_text(USER, miss_summary, group, 0)
    assert 'Turn 2: the recommender suggested "Alien" (reason: you watched Aliens); you said yes' in user_text
    assert better_sibling_text(REC, hit_summary, group, 1) is None
    assert better_sibling_text(REC, miss_summary, None, 0) is None  # alone in its group


# --------------------------------------------------------------------------- hindsight
def test_hindsight(miss_summary, hit_summary):
    text = whole_dialogue_text(REC, miss_summary)
    assert text.split("\n") == [
        "Hindsight on this dialogue (how the user answered each recommendation and how it ended):",
        'Turn 1: you recommended "Toy Story"; the user said no: too childish for me',
        "Turn 2: your answer named no valid candidate.",
        'Turn 3: you recommended "Titanic"; the user said no: I avoid romance',
        'Turn 4: you recommended "Heat"; the user said yes: I like crime films',
        'Outcome: the user accepted "Heat", but it was not the item they wanted.',
    ]
    assert "Alien" not in text
    user_text = whole_dialogue_text(USER, hit_summary)
    assert user_text.endswith('Outcome: you accepted "Alien", which was the item you wanted.')
    assert "Turn 1: the recommender suggested \"Titanic\"; you said no: I avoid romance" in user_text
    assert whole_dialogue_text(REC, Transcript("u1", "Alien", "i3", max_turns=3)) is None  # no turn played


def test_hindsight_no_acceptance_but_final_item_right():
    summary = played("u", [("Titanic", "r", "no", ""), ("Alien", "r", "maybe", "")], max_turns=2)
    text = whole_dialogue_text(USER, summary)
    assert ('Turn 1: the recommender suggested "Titanic"; you said no\n'
            'Turn 2: the recommender suggested "Alien"; you gave no valid answer\n') in text
    assert text.endswith('Outcome: no item was accepted in 2 turns; the last suggestion "Alien" was the item you wanted.')


# ------------------------------------------------------------------------------ target
def test_target_item(miss_summary):
    assert target_item_text(REC, miss_summary) == 'The item this user actually picks next is "Alien".'
    assert target_item_text(USER, miss_summary) == 'The item you actually want next is "Alien".'
    assert target_item_text(REC, {**miss_summary, "target_title": None}) is None


# ---------------------------------------------------------------- fallback and budget
def test_fallback_order(miss_summary, hit_summary):
    mem = DialogueMemory()
    group = [(miss_summary, 0.2), (hit_summary, 1.3)]
    assert DEFAULT_SOURCES == ("memory", "sibling", "hindsight")
    # empty memory -> sibling
    text, src = first_source(REC, miss_summary, memory=mem, group=group, self_index=0, step=1)
    assert src == "sibling" and text == better_sibling_text(REC, miss_summary, group, 0)
    # no better sibling -> hindsight
    _, src = first_source(REC, hit_summary, memory=mem, group=group, self_index=1, step=1)
    assert src == "hindsight"
    # memory present -> memory first
    mem.add("u1", compact_record(miss_summary), step=0)
    text, src = first_source(REC, miss_summary, memory=mem, group=group, self_index=0, step=1)
    assert src == "memory" and text == user_notes(REC, "u1", mem, before_step=1)
    # ... but not if it is from the current step
    _, src = first_source(REC, miss_summary, memory=mem, group=group, self_index=0, step=0)
    assert src == "sibling"
    # custom order
    _, src = first_source(USER, miss_summary, sources=("target", "memory"), memory=mem, step=1)
    assert src == "target"
    # nothing available
    nothing = Transcript("x", "", "", max_turns=3)  # no turn, no known target, nobody in the memory
    assert first_source(REC, nothing, memory=mem, sources=("memory", "sibling", "hindsight", "target")) == (None, None)
    assert first_source(REC, miss_summary, sources=()) == (None, None)
    with pytest.raises(ValueError, match="oracle.*registered"):
        first_source(REC, miss_summary, sources=("memory", "oracle"))
    with pytest.raises(ValueError, match="oracle"):  # checked even when an earlier source answers
        first_source(REC, miss_summary, sources=("hindsight", "oracle"))
    with pytest.raises(ValueError, match="role"):
        first_source("critic", miss_summary)


def test_budget_truncation(miss_summary):
    full = whole_dialogue_text(REC, miss_summary, max_chars=None)
    assert len(full) > 120
    cut = whole_dialogue_text(REC, miss_summary, max_chars=120)
    assert len(cut) <= 120 and cut.endswith("…") and full.startswith(cut[:-1])
    text, _ = first_source(REC, miss_summary, sources=("hindsight",), max_chars=50)
    assert len(text) <= 50
    assert fit_budget(["ab", "cd"], 5) == "ab\ncd" and fit_budget(["ab", "cd"], 4) == "ab…"
    long_reason = played("u1", [("Toy Story", "r", "no", "z" * 1000)], max_turns=1)
    line = whole_dialogue_text(REC, long_reason, max_chars=None).split("\n")[1]
    assert len(line) < 300  # each reason is capped too


def test_a_summary_from_extra_info_is_read_turn_by_turn():
    from coars_verl.dialogue.state import Dialogue

    dialogue = Dialogue.from_extra_info(
        {"user_id": "u1", "history_titles": ["A", "B", "C"], "candidate_titles": ["Heat", "Fargo"], "target_title": "Fargo"}
    )
    dialogue.submit("recommender", "Reason: action.\nItem: Heat")
    dialogue.submit("user", "Reason: too loud.\nDecision: no")
    dialogue.submit("recommender", "Reason: dark comedy.\nItem: Fargo")
    dialogue.submit("user", "Reason: love it.\nDecision: yes")
    transcript = Transcript.from_summary(dialogue.transcript.summary())
    assert [r.rec_item_title for r in transcript.rejected_turns] == ["Heat"] and transcript.rejected_turns[0].user_reason == "too loud."
    assert transcript.accepted_turn.rec_item_title == "Fargo" and transcript.hit and transcript.user_id == "u1"
