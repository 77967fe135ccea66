"""One reader of ``coars.reward``: the reward manager, the trainer mode and the driver check score with the same weights."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import coars_verl
from coars_verl.rewards.interaction import REWARD_SECTION, RewardConfig, reward_config


def test_a_run_config_and_a_plain_mapping_give_the_same_weights():
    run = {"algorithm": {"adv_estimator": "coars_grpo"}, "coars": {"reward": {"beta": 1.0, "mode": "outcome"}}}
    assert reward_config(OmegaConf.create(run)) == reward_config(run) == RewardConfig(beta=1.0, mode="outcome")


@pytest.mark.parametrize("run", [{}, {"coars": {}}, {"coars": {"reward": None}}])
def test_without_a_reward_section_the_defaults_apply(run):
    assert reward_config(OmegaConf.create(run)) == reward_config(run) == RewardConfig()


def test_a_misspelt_key_is_named_with_its_section():
    with pytest.raises(ValueError, match=r"coars\.reward: unknown key\(s\) \['betta'\]"):
        reward_config(OmegaConf.create({"coars": {"reward": {"betta": 1.0}}}))


def test_no_other_module_reads_the_reward_section_itself():
    package = Path(coars_verl.__file__).parent
    home = package / "rewards" / "interaction.py"
    readers = [str(path.relative_to(package)) for path in package.rglob("*.py")
               if path != home and f'"{REWARD_SECTION}"' in path.read_text()]
    assert readers == [], f"read {REWARD_SECTION} with rewards.interaction.reward_config, not in {readers}"
