"""Teacher contexts for a single-turn verl task (role ``single``): the best-scored other answer of the
same prompt, earlier answers under a memory key, or the reference answer; dialogue-only sources
have nothing to say there."""

import json

import pytest

from coars_verl.constants import ROLE_SINGLE
from coars_verl.distill.batch_contexts import StudentSample, batch_teacher_prompts
from coars_verl.distill.config import SelfDistillConfig
from coars_verl.distill.contexts import GroupMember, SampleEvidence, first_teacher_context
from coars_verl.distill.memory import DialogueMemory
from coars_verl.distill.sources.memory import answer_record
from coars_verl.distill.sources.sibling import best_scored_sibling


def render(messages):
    return [ord(c) for c in json.dumps(messages, sort_keys=True)]


def first_single_turn_source(sources, responses, scores, position, ground_truth, max_chars):
    group = [GroupMember(reward=s, answer=r) for r, s in zip(responses, scores)]
    return first_teacher_context(sources, SampleEvidence(role=ROLE_SINGLE, group=group, position=position, ground_truth=ground_truth,
                                                         max_chars=max_chars))


def samples(uids, responses, scores, messages, real, memory_keys=None, ground_truths=None):
    return [
        StudentSample(uid=uid, role=ROLE_SINGLE, reward=score, messages=m, prompt_ids=render(m), answer=response,
                      memory_key=memory_keys[i] if memory_keys else None, ground_truth=ground_truths[i] if ground_truths else None)
        if is_real else None
        for i, (uid, response, score, m, is_real) in enumerate(zip(uids, responses, scores, messages, real))
    ]


def test_the_sibling_is_the_best_other_answer_and_only_when_strictly_better():
    scores = [0.2, 1.0, 0.5, 1.0]
    assert best_scored_sibling(scores, 0) == 1  # ties go to the lowest index
    assert best_scored_sibling(scores, 1) is None  # the other 1.0 is not strictly better
    assert best_scored_sibling(scores, 2) == 1
    assert best_scored_sibling([0.3], 0) is None
    with pytest.raises(IndexError):
        best_scored_sibling(scores, 4)


def test_sources_are_tried_in_order_and_dialogue_sources_are_skipped():
    responses, scores = ["12", "14", "13"], [0.0, 1.0, 0.0]
    text, source = first_single_turn_source(("memory", "hindsight", "sibling", "target"), responses, scores, 0, "14", 500)
    assert source == "sibling" and text.endswith("\n14") and "1 against 0" in text
    text, source = first_single_turn_source(("sibling", "target"), responses, scores, 1, "14", 500)  # the best has no better sibling
    assert source == "target" and text == "The reference answer to this task:\n14"
    assert first_single_turn_source(("memory", "hindsight", "neighbor"), responses, scores, 0, "14", 500) == (None, None)
    assert first_single_turn_source(("target",), responses, scores, 0, None, 500) == (None, None)


def test_a_batch_gets_teacher_prompts_per_prompt_group_with_the_samples_own_messages():
    cfg = SelfDistillConfig(sources=("sibling",))
    uids = ["a", "a", "b", "b", "b"]
    responses = ["7", "8", "x", "y", "z"]
    scores = [1.0, 0.0, 0.0, 0.5, 0.0]  # prompt b's best (0.5) must not be shown to prompt a's samples
    messages = [[{"role": "user", "content": f"question {uid}"}] for uid in uids]
    real = [True, True, True, True, False]  # the last one is verl's padding
    out = batch_teacher_prompts(samples(uids, responses, scores, messages, real), render, cfg)
    assert sorted(out.prompts) == [1, 2]
    text_for_1, _ = first_single_turn_source(("sibling",), ["7", "8"], [1.0, 0.0], 1, None, cfg.context_max_chars)
    assert "\n7" in text_for_1 and out.texts[1] == text_for_1
    expected = [{"role": "system", "content": text_for_1}, messages[1][0]] if cfg.context_position == "system" else None
    assert out.prompts[1] == render(expected)
    assert out.source_counts() == {"sibling": 2}


def test_memory_shows_earlier_answers_of_the_same_key_only():
    cfg = SelfDistillConfig(sources=("memory", "sibling"), memory_key="user_id", memory_k=2)
    memory = DialogueMemory()
    memory.add("u1", answer_record("Heat", 1.0), step=1)
    memory.add("u2", answer_record("Up", 0.0), step=1)
    memory.add("u1", answer_record("Fargo", 0.2), step=3)  # this very step: not memory yet
    messages = [[{"role": "user", "content": "recommend"}]] * 3
    batch = samples(["a", "a", "b"], ["x", "y", "z"], [0.0, 0.0, 0.0], messages, [True] * 3, memory_keys=["u1", None, "u3"])
    out = batch_teacher_prompts(batch, render, cfg, memory=memory, step=3)
    assert sorted(out.prompts) == [0] and out.sources == {0: "memory"}  # no key, or a key never seen: nothing
    teacher_text = "".join(chr(c) for c in out.prompts[0])
    assert "Earlier answers for this user_id" in teacher_text and "reward 1: Heat" in teacher_text
    assert "Up" not in teacher_text and "Fargo" not in teacher_text
    assert SelfDistillConfig.from_mapping({"memory_key": None}).memory_key is None
