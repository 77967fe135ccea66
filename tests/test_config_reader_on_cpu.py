"""The one reader of configuration sections: every config dataclass reads a value the same way.

Before it, ``lam0: "0.5"`` was accepted by the self-distillation config and ``gamma: "0.9"``
rejected by the reward config; each test here states the shared rule on all three sections.
"""

import pytest
from omegaconf import OmegaConf

from coars_verl.distill.config import SelfDistillConfig
from coars_verl.dialogue.state import DialogueConfig
from coars_verl.rewards.interaction import RewardConfig

SECTIONS = [  # (reader, section name in errors, a float field, an int field or None)
    (SelfDistillConfig.from_mapping, "algorithm.coars.self_distill", "lam0", "memory_k"),
    (RewardConfig.from_mapping, "coars.reward", "gamma", None),
    (DialogueConfig.from_mapping, "coars.dialogue", None, "max_turns"),
]


@pytest.mark.parametrize("read, section, float_key, int_key", SECTIONS)
def test_every_section_reads_values_by_one_rule(read, section, float_key, int_key):
    with pytest.raises(ValueError, match=rf"{section}: unknown key\(s\) \['bogus'\]"):
        read({"bogus": 1})
    if float_key:
        assert getattr(read({float_key: 1}), float_key) == 1.0 and isinstance(getattr(read({float_key: 1}), float_key), float)
        for quoted in ("0.5", True):
            with pytest.raises(ValueError, match=rf"{section}.{float_key}: expected a number"):
                read({float_key: quoted})
    if int_key:
        assert getattr(read(OmegaConf.create({int_key: 3.0})), int_key) == 3
        for bad in ("3", 2.5, True):
            with pytest.raises(ValueError, match=rf"{section}.{int_key}: expected an integer"):
                read({int_key: bad})


def test_optional_tuple_and_bool_fields():
    assert SelfDistillConfig.from_mapping({"lambda_decay_fraction": None}).lambda_decay_fraction is None
    assert SelfDistillConfig.from_mapping({"lambda_decay_fraction": 1}).lambda_decay_fraction == 1.0
    assert SelfDistillConfig.from_mapping(OmegaConf.create({"sources": ["sibling"]})).sources == ("sibling",)
    with pytest.raises(ValueError, match="sources: expected a list of strings"):
        SelfDistillConfig.from_mapping({"sources": [1, 2]})
    with pytest.raises(ValueError, match="numbered_candidates: expected true/false"):
        DialogueConfig.from_mapping({"numbered_candidates": "yes"})
    with pytest.raises(ValueError, match="control_markers"):  # built by the dialogue, not a recipe key
        DialogueConfig.from_mapping({"control_markers": ["x"]})
