"""The coars_interaction reward manager as verl's reward loop calls it: ``coars.reward.*`` is read,
both roles' rewards travel in ``reward_extra_info``, and the session score is the recommender's."""

import asyncio

import numpy as np
import pytest
from omegaconf import OmegaConf
from verl import DataProto

from coars_verl.constants import EXTRA_SUMMARY, REC_REWARD_KEY, USER_REWARD_KEY
from coars_verl.constants import ROLE_RECOMMENDER as REC, ROLE_USER as USER
from coars_verl.dialogue.state import Dialogue, DialogueConfig, DialogueSample
from coars_verl.reward_manager import CoarsInteractionRewardManager

SAMPLE = DialogueSample(
    user_id="u", history_titles=("Alien",), candidate_titles=("The Matrix", "Heat", "Up"),
    candidate_item_ids=("m", "h", "u"), target_title="Heat", target_item_id="h",
)
# turn 1 unparsable (a format error, the turn is lost), turn 2 the target, accepted
SCRIPT = [(REC, "I cannot decide."), (REC, "Reason: r\nItem: Heat"), (USER, "Reason: u\nDecision: yes")]


def _rows(summary, n=2):
    """What the agent loop hands the reward loop for one dialogue: one row per output, same summary."""
    extras = np.empty(n, dtype=object)
    for i in range(n):
        extras[i] = {EXTRA_SUMMARY: summary} if summary is not None else {}
    return DataProto.from_dict(non_tensors={"tool_extra_fields": extras})


def _score(reward_section):
    dialogue = Dialogue(SAMPLE, DialogueConfig(max_turns=3))
    for role, text in SCRIPT:
        dialogue.submit(role, text)
    config = OmegaConf.create({"coars": {"reward": reward_section}} if reward_section is not None else {})
    manager = CoarsInteractionRewardManager(config, tokenizer=None)
    return asyncio.run(manager.run_single(_rows(dialogue.transcript.summary())))


def test_non_default_reward_weights_are_read_from_the_recipe():
    out = _score({"gamma": 0.5, "beta": 1.0, "format_penalty": 0.3})
    info = out["reward_extra_info"]
    # by hand: R_rec = 0.5 ** (2 - 1) - 0.3 * 1 invalid turn + 1.0 * hit; R_user = 1 correct of 1 + 1.0 * hit
    assert info[REC_REWARD_KEY] == pytest.approx(1.2)
    assert info[USER_REWARD_KEY] == pytest.approx(2.0)
    assert out["reward_score"] == pytest.approx(1.2)


def test_without_a_section_the_spec_defaults_apply():
    info = _score(None)["reward_extra_info"]
    # gamma 0.9, beta 0.5, format penalty 0.1
    assert info[REC_REWARD_KEY] == pytest.approx(0.9 - 0.1 + 0.5)
    assert info[USER_REWARD_KEY] == pytest.approx(1.5)


def test_the_outcome_mode_and_a_misspelt_key():
    info = _score({"mode": "outcome"})["reward_extra_info"]
    assert (info[REC_REWARD_KEY], info[USER_REWARD_KEY]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="betta"):
        _score({"betta": 1.0})


def test_rows_without_a_dialogue_summary_are_refused_with_the_fix():
    manager = CoarsInteractionRewardManager(OmegaConf.create({}), tokenizer=None)
    with pytest.raises(ValueError, match="coars_dialogue"):
        asyncio.run(manager.run_single(_rows(None)))
