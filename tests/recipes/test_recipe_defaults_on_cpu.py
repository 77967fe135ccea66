"""One home per default: every ``coars.*`` / ``algorithm.coars.*`` default is its dataclass field (with
its help), ``base/coars.yaml`` repeats exactly those values, and a recipe that sets another value says
so in a comment ("not the default: why") on the key or right above it."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from coars_verl.agent_loop_config import AgentLoopConfig
from coars_verl.composition import ALGORITHM_COARS_SECTIONS, COARS_SECTIONS
from coars_verl.credit_dump import DumpConfig
from coars_verl.dialogue.state import DialogueConfig
from coars_verl.distill.config import SelfDistillConfig
from coars_verl.recipes import RECIPES_DIR
from coars_verl.rewards.interaction import RewardConfig
from coars_verl.utils.config_reader import read_section

SECTIONS = {
    ("coars", "dialogue"): (DialogueConfig, ("templates", "control_markers")),  # templates: coars.prompts
    ("coars", "agent_loop"): (AgentLoopConfig, ()),
    ("coars", "reward"): (RewardConfig, ()),
    ("coars", "dump"): (DumpConfig, ()),
    ("algorithm", "coars", "self_distill"): (SelfDistillConfig, ()),
}
MARKER = "not the default"
BASE = RECIPES_DIR / "base" / "coars.yaml"


def _recipe_keys(cls, not_keys):
    return {f.name for f in dataclasses.fields(cls) if f.name not in not_keys}


def _value(cls, not_keys, path, key, value):
    """The value a recipe's ``key: value`` gives the dataclass (as the components read it)."""
    return getattr(read_section(cls, {key: value}, ".".join(path), exclude=not_keys), key)


def _default(cls, key):
    return getattr(cls(), key)


@pytest.mark.parametrize("cls", [cls for cls, _ in SECTIONS.values()], ids=lambda c: c.__name__)
def test_every_setting_has_its_help_in_its_field(cls):
    missing = [f.name for f in dataclasses.fields(cls) if not str(f.metadata.get("help", "")).strip()]
    assert missing == []


def _section(tree, path):
    for key in path:
        tree = (tree or {}).get(key)
    return tree


def test_every_section_the_driver_check_accepts_has_its_defaults_here():
    """A new ``coars.*`` section (its dataclass) cannot skip this file's checks."""
    assert {path[1] for path in SECTIONS if path[0] == "coars"} | {"prompts"} == set(COARS_SECTIONS)
    assert {path[2] for path in SECTIONS if path[0] == "algorithm"} == set(ALGORITHM_COARS_SECTIONS)


def test_base_coars_yaml_repeats_exactly_the_dataclass_defaults():
    tree = yaml.safe_load(BASE.read_text())
    assert set(tree["coars"]) == {path[1] for path in SECTIONS if path[0] == "coars"} | {"prompts"}
    assert tree["coars"]["prompts"] == {}  # the templates' defaults are PromptTemplates'
    assert set(tree["algorithm"]["coars"]) == {path[2] for path in SECTIONS if path[0] == "algorithm"}
    for path, (cls, not_keys) in SECTIONS.items():
        section = _section(tree, path)
        assert set(section) == _recipe_keys(cls, not_keys), ".".join(path)
        for key, value in section.items():
            assert _value(cls, not_keys, path, key, value) == _default(cls, key), f"{'.'.join(path)}.{key}"


def _leaves(node, path=()):
    """``(path, key node, value node)`` of every scalar or list under a composed YAML mapping node."""
    for key_node, value_node in node.value:
        key_path = path + (key_node.value,)
        if isinstance(value_node, yaml.MappingNode):
            yield from _leaves(value_node, key_path)
        else:
            yield key_path, key_node, value_node


def unmarked_settings(text: str) -> list[str]:
    """The settings of a recipe's text that repeat a default or differ from it without a comment saying so
    (the marker on the key's line or in the comment lines right above it)."""
    lines = text.splitlines()
    root = yaml.compose(text)
    if root is None:
        return []
    problems = []
    for key_path, key_node, value_node in _leaves(root):
        for path, (cls, not_keys) in SECTIONS.items():
            if key_path[:-1] != path:
                continue
            key = key_path[-1]
            value = _value(cls, not_keys, path, key, yaml.safe_load(yaml.serialize(value_node)))
            line = key_node.start_mark.line
            above = []
            while line - len(above) - 1 >= 0 and lines[line - len(above) - 1].strip().startswith("#"):
                above.append(lines[line - len(above) - 1])
            marked = MARKER in lines[line] or any(MARKER in comment for comment in above)
            if value == _default(cls, key):
                problems.append(f"{'.'.join(key_path)}: repeats the default ({value!r}); drop it")
            elif not marked:
                problems.append(f"{'.'.join(key_path)}: {value!r} differs from the default {_default(cls, key)!r} "
                                f"without a comment '# {MARKER}: why'")
    return problems


RECIPE_FILES = sorted(p for p in RECIPES_DIR.rglob("*.yaml") if p != BASE and p.parent.name != "prompts")


@pytest.mark.parametrize("recipe", RECIPE_FILES, ids=lambda p: str(p.relative_to(RECIPES_DIR)))
def test_a_recipe_that_differs_from_a_default_says_so(recipe: Path):
    assert unmarked_settings(recipe.read_text()) == []


def test_the_check_finds_an_unmarked_difference_and_a_repeated_default():
    text = "coars:\n  reward:\n    beta: 0.0\n    gamma: 0.9\n  dialogue:\n    # not the default: short\n    max_turns: 3\n"
    assert unmarked_settings(text) == [
        "coars.reward.beta: 0.0 differs from the default 0.5 without a comment '# not the default: why'",
        "coars.reward.gamma: repeats the default (0.9); drop it",
    ]
    assert unmarked_settings("algorithm:\n  coars:\n    self_distill:\n      lambda_decay_fraction: null  # not the default: CPU\n") == []
