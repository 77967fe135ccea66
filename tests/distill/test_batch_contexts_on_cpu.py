"""Teacher prompts for a hand-built batch: the right sibling group, the sample's own messages, the
render check, and padding samples left out."""

import json

from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.batch_contexts import StudentSample, batch_teacher_prompts, role_groups
from coars_verl.distill.config import SelfDistillConfig

from distill_fakes import first_context


def render(messages):
    """A stand-in chat template: any injective function of the messages will do."""
    return [ord(c) for c in json.dumps(messages, sort_keys=True)]


def _messages(role, i):
    return [{"role": "system", "content": f"You are the {role} agent."}, {"role": "user", "content": f"dialogue {i}"}]


def dialogue_samples(uids, roles, transcripts, scores, messages, prompts, real):
    return [StudentSample(uid=u, role=r, reward=s, messages=m, prompt_ids=p, transcript=t, memory_key=t.user_id) if is_real else None
            for u, r, t, s, m, p, is_real in zip(uids, roles, transcripts, scores, messages, prompts, real)]


def test_groups_are_prompt_and_role_and_skip_padding():
    uids = ["p", "p", "p", "p", "q", "q"]
    roles = ["user", "recommender", "user", "recommender", "user", "recommender"]
    real = [True, True, True, True, True, False]
    batch = [StudentSample(uid=u, role=r, reward=0.0, messages=[]) if is_real else None for u, r, is_real in zip(uids, roles, real)]
    assert role_groups(batch) == {("p", "user"): [0, 2], ("p", "recommender"): [1, 3], ("q", "user"): [4]}


def test_a_missed_dialogue_learns_from_the_best_sibling_of_its_own_role(miss_summary, hit_summary, hit_turn1_summary):
    cfg = SelfDistillConfig(sources=("sibling",))
    # one prompt, three dialogues (a miss, a hit at turn 2, a hit at turn 1), two samples each. The
    # user samples' scores differ from the recommenders', so grouping by prompt only would show the
    # missed recommender the turn-1 hit (best user score) instead of the best recommender's dialogue.
    roles = ["recommender", "user"] * 3
    summaries = [miss_summary, miss_summary, hit_summary, hit_summary, hit_turn1_summary, hit_turn1_summary]
    scores = [0.0, 2.0, 1.4, 0.1, 1.0, 1.6]
    messages = [_messages(r, i) for i, r in enumerate(roles)]
    prompts = [render(m) for m in messages]
    transcripts = [Transcript.from_summary(summary) for summary in summaries]
    out = batch_teacher_prompts(dialogue_samples(["p"] * 6, roles, transcripts, scores, messages, prompts, [True] * 6), render, cfg)

    rec_group = [(miss_summary, 0.0), (hit_summary, 1.4), (hit_turn1_summary, 1.0)]
    expected_text, _ = first_context("recommender", miss_summary, ("sibling",), group=rec_group, position=0, max_chars=cfg.context_max_chars)
    assert expected_text and "Titanic" in expected_text  # hit_summary's rejected first turn
    expected_messages = [dict(messages[0][0], content=messages[0][0]["content"] + "\n\n" + expected_text), messages[0][1]]
    assert out.prompts[0] == render(expected_messages) and out.texts[0] == expected_text
    # only samples with a strictly better successful sibling of their own role get a teacher
    assert sorted(out.prompts) == [0, 3, 4] and set(out.sources.values()) == {"sibling"} and out.mismatched == 0


def test_a_prompt_the_renderer_does_not_reproduce_gets_no_teacher(miss_summary, hit_summary):
    cfg = SelfDistillConfig(sources=("hindsight",))
    roles = ["recommender", "user", "recommender"]
    messages = [_messages(r, i) for i, r in enumerate(roles)]
    prompts = [render(m) for m in messages]
    prompts[1] = prompts[1][:-1]  # stored prompt differs from the rendering of the messages
    miss = Transcript.from_summary(miss_summary)
    out = batch_teacher_prompts(dialogue_samples(["p"] * 3, roles, [miss] * 3, [0.0] * 3, messages, prompts, [True, True, False]), render, cfg)
    assert sorted(out.prompts) == [0] and out.mismatched == 1  # sample 2 is verl's padding
    assert out.source_counts() == {"hindsight": 1}


def test_a_sample_not_wanted_gets_no_teacher_but_stays_a_sibling(miss_summary, hit_summary):
    cfg = SelfDistillConfig(sources=("sibling",))
    roles = ["recommender"] * 2
    messages = [_messages("recommender", i) for i in range(2)]
    transcripts = [Transcript.from_summary(miss_summary), Transcript.from_summary(hit_summary)]
    batch = dialogue_samples(["p"] * 2, roles, transcripts, [0.0, 1.4], messages, [render(m) for m in messages], [True] * 2)
    batch[1] = StudentSample(**{**batch[1].__dict__, "wanted": False})
    out = batch_teacher_prompts(batch, render, cfg)
    assert sorted(out.prompts) == [0] and "Alien" in out.texts[0]  # the unwanted hit is the miss's sibling


def test_a_prompt_shared_by_samples_is_rendered_once(miss_summary):
    """Three recommender samples of one group share their prompt and (hindsight of the same dialogue)
    their teacher prompt: one rendering each, with the same ids as rendering every time."""
    cfg = SelfDistillConfig(sources=("hindsight",))
    calls = []

    def counting_render(messages):
        calls.append(messages)
        return render(messages)

    messages = [_messages("recommender", 0)] * 3
    miss = Transcript.from_summary(miss_summary)
    batch = dialogue_samples(["p"] * 3, ["recommender"] * 3, [miss] * 3, [0.0] * 3, messages, [render(messages[0])] * 3, [True] * 3)
    out = batch_teacher_prompts(batch, counting_render, cfg)
    assert sorted(out.prompts) == [0, 1, 2] and out.prompts[0] == out.prompts[2]
    assert len(calls) == 2  # the student prompt (alignment check) and the teacher prompt, once each
    uncached = batch_teacher_prompts(batch, render, cfg)
    assert uncached.prompts == out.prompts
