"""docs/components.md's "Using one component" blocks compose on verl's own config and pass our composition check.

Each block follows a ``<!-- checked: NAME -->`` line; its overrides are applied to verl's
``ppo_trainer`` as main_ppo would, so a block that drifts from what the components need fails here.
"""

import re
import shlex
from pathlib import Path

import pytest
import verl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from coars_verl.composition import composition_problems, cpu_problems

README = Path(__file__).resolve().parents[2] / "docs" / "components.md"
VERL_CONFIG = Path(verl.__file__).parent / "trainer" / "config"
PATHS = ["actor_rollout_ref.model.path=/models/m", "data.train_files=/d/train.parquet", "data.val_files=/d/valid.parquet"]


def readme_blocks() -> dict[str, list[str]]:
    blocks = re.findall(r"<!-- checked: (\w+) -->\s*```bash\n(.*?)```", README.read_text(), flags=re.S)
    parsed = {}
    for name, body in blocks:
        words = shlex.split(body.replace("\\\n", " "), comments=True)
        parsed[name] = words
    return parsed


def overrides(words: list[str]) -> list[str]:
    """What follows ``python -m verl.trainer.main_ppo``."""
    return words[words.index("verl.trainer.main_ppo") + 1:]


def _compose(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(VERL_CONFIG), version_base=None):
        return compose(config_name="ppo_trainer", overrides=[*PATHS, *overrides])


def test_the_readme_has_both_blocks():
    assert set(readme_blocks()) == {"dialogue", "cpu", "single_turn"}


def test_the_dialogue_block_selects_all_four_components_and_nothing_is_missing():
    config = _compose(overrides(readme_blocks()["dialogue"]))
    assert (config.actor_rollout_ref.rollout.agent.default_agent_loop, config.reward.reward_manager.name,
            config.algorithm.adv_estimator, config.trainer.v1.trainer_mode) == ("coars_dialogue", "coars_interaction", "coars_grpo", "coars_sync")
    assert composition_problems(config) == []


@pytest.mark.parametrize("dropped", ["trainer.v1.trainer_mode=coars_sync", "algorithm.adv_estimator=coars_grpo"])
def test_the_dialogue_block_without_one_of_its_components_is_refused(dropped):
    block = overrides(readme_blocks()["dialogue"])
    assert dropped in block
    assert composition_problems(_compose([o for o in block if o != dropped]))


def test_the_cpu_block_puts_verls_config_on_cpu_without_a_problem():
    words = readme_blocks()["cpu"]
    assert words[0] == "VERL_PLATFORM=cpu"
    config = _compose(overrides(words))
    assert config.actor_rollout_ref.rollout.name == "hf" and config.actor_rollout_ref.actor.strategy == "fsdp2"
    assert composition_problems(config) == [] and cpu_problems(config, machine_cpus=2) == []


def test_the_single_turn_block_is_what_the_end_to_end_test_runs():
    from helpers import SINGLE_TURN_TWO_OVERRIDES as TWO_OVERRIDES

    block = overrides(readme_blocks()["single_turn"])
    assert block[:2] == TWO_OVERRIDES
    config = _compose(["algorithm.adv_estimator=grpo", *block])  # on verl's own single-turn config
    assert config.algorithm.coars.self_distill.sources == ["sibling", "target"]
    assert composition_problems(config) == []
