"""Teacher-context sources are a registry: a new one is one object, reached by every reader of the
registry (the batch's teacher prompts, the config, the driver check, the evaluation's choices)
without an edit anywhere else; an unknown name fails with the registered names, never a fallback."""

import json
import re
from pathlib import Path

import pytest

from coars_verl.composition import composition_problems
from coars_verl.constants import ROLE_RECOMMENDER, ROLE_USER
from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.batch_contexts import StudentSample, batch_teacher_prompts
from coars_verl.distill.config import SelfDistillConfig
from coars_verl.distill import contexts as registry
from coars_verl.recipes import RECIPES_DIR

from distill_fakes import evidence

REPO = Path(__file__).resolve().parents[2]


def first_rejection(evidence: registry.SampleEvidence):
    """A throwaway source: the first item the user rejected in this dialogue."""
    rejected = evidence.transcript.rejected_turns
    return f"The user first rejected {rejected[0].rec_item_title}." if rejected else None


@pytest.fixture
def throwaway():
    source = registry.register_teacher_source(registry.TeacherSource(
        name="first_rejection", summary="the first rejected item", needs=(registry.NEEDS_DIALOGUE,),
        headers={ROLE_RECOMMENDER: "", ROLE_USER: ""}, dialogue=first_rejection,
    ))
    yield source
    registry.unregister_teacher_source(source.name)


def render(messages):
    return [ord(c) for c in json.dumps(messages, sort_keys=True)]


def test_a_registered_source_reaches_the_batch_prompts_and_the_driver_check(throwaway, miss_summary, hit_turn1_summary):
    assert "first_rejection" in registry.teacher_source_names()
    cfg = SelfDistillConfig(sources=("first_rejection", "hindsight"))  # the config accepts it
    messages = [{"role": "system", "content": "You recommend."}, {"role": "user", "content": "go"}]
    samples = [StudentSample(uid="p", role=ROLE_RECOMMENDER, reward=0.0, messages=messages, prompt_ids=render(messages),
                             transcript=Transcript.from_summary(summary), memory_key="u1")
               for summary in (miss_summary, hit_turn1_summary)]
    out = batch_teacher_prompts(samples, render, cfg)
    assert out.sources == {0: "first_rejection", 1: "hindsight"}  # the hit rejected nothing: the next source
    assert out.texts[0] == "The user first rejected Toy Story."
    assert "The user first rejected Toy Story." in "".join(map(chr, out.prompts[0]))

    dialogue = {"algorithm": {"adv_estimator": "coars_grpo", "coars": {"self_distill": {"sources": ["first_rejection"]}}},
                "trainer": {"v1": {"trainer_mode": "coars_sync"}},
                "actor_rollout_ref": {"rollout": {"agent": {"default_agent_loop": "coars_dialogue"}}},
                "reward": {"reward_manager": {"name": "coars_interaction"}}}
    assert composition_problems(dialogue) == []
    single_turn = {**dialogue, "actor_rollout_ref": {"rollout": {"agent": {"default_agent_loop": "single_turn_agent"}}},
                   "reward": {"reward_manager": {"name": "naive"}}}
    problems = composition_problems(single_turn)
    assert any("first_rejection" in p and "without a dialogue" in p for p in problems), problems  # it has no single-turn builder
    assert "first_rejection" not in registry.user_only_source_names()  # it reads the dialogue: not an evaluation choice


def test_an_unknown_source_fails_with_the_registered_names_and_never_falls_back(miss_summary):
    with pytest.raises(ValueError, match=r"oracle.*registered.*target"):
        SelfDistillConfig(sources=("oracle",))
    with pytest.raises(ValueError, match=r"unknown teacher-context source 'oracle'; registered: .*target"):
        registry.first_teacher_context(("oracle",), evidence(ROLE_RECOMMENDER, miss_summary))
    with pytest.raises(ValueError, match="oracle"):
        registry.teacher_source("oracle")
    bad = {"algorithm": {"adv_estimator": "coars_grpo", "coars": {"self_distill": {"sources": ["oracle"]}}},
           "trainer": {"v1": {"trainer_mode": "coars_sync"}}}
    assert any("oracle" in p and "registered" in p for p in composition_problems(bad))


def test_a_name_is_registered_once(throwaway):
    registry.register_teacher_source(throwaway)  # the same object again (a module imported twice): fine
    with pytest.raises(ValueError, match="registered already"):
        registry.register_teacher_source(registry.TeacherSource(name="first_rejection", summary="", needs=(), headers={}, dialogue=first_rejection))
    with pytest.raises(ValueError, match="needs"):
        registry.TeacherSource(name="x", summary="", needs=("telepathy",), headers={}, dialogue=first_rejection)


def test_the_leaking_source_is_marked_and_never_a_default():
    assert [name for name in registry.teacher_source_names() if registry.teacher_source(name).leaks_answer] == ["target"]
    assert not set(SelfDistillConfig().sources) & {"target"}
    assert set(registry.user_only_source_names()) == {"memory", "neighbor"}


def test_every_built_in_source_has_its_ablation_recipe_and_its_row_in_the_docs():
    names = set(registry.teacher_source_names())
    recipes = {path.stem.removeprefix("teacher_") for path in (RECIPES_DIR / "ablation").glob("teacher_*.yaml")} - {"reference"}
    assert recipes == names
    for name in names:
        text = (RECIPES_DIR / "ablation" / f"teacher_{name}.yaml").read_text()
        assert re.search(rf"sources: \[{name}\]", text), name
    rows = re.findall(r"^\s*\| `(\w+)` \| (.+?) \| (.+?) \| (yes|no) \|$", (REPO / "docs" / "method.md").read_text(), re.M)
    documented = {name: (summary, needs, single) for name, summary, needs, single in rows}
    assert set(documented) == names
    for name in names:
        source = registry.teacher_source(name)
        assert documented[name] == (source.summary, ", ".join(source.needs), "yes" if source.single_turn else "no"), name
