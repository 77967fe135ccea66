"""The registered coars_grpo estimator as verl calls it."""

import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage, get_adv_estimator_fn

from coars_verl.algo.advantage import clip_hit_mask
from coars_verl.distill.config import SelfDistillConfig
from coars_verl.constants import ADV_ESTIMATOR_NAME

UIDS = ["a", "a", "a", "a", "b", "b", "b", "b"]
ROLES = ["user", "recommender"] * 4
SCORES = torch.tensor([0.2, 1.0, 0.9, 0.0, 0.5, 0.5, 0.1, 0.8])


def _inputs(width=5):
    mask = torch.ones(len(SCORES), width)
    mask[0, 3:] = 0
    rewards = torch.zeros_like(mask)
    lengths = mask.sum(-1).long()
    rewards[torch.arange(len(SCORES)), lengths - 1] = SCORES
    return rewards, mask


def _config(**self_distill):
    # a schedule in steps: called alone, the estimator does not know the run's length
    return OmegaConf.create({"norm_adv_by_std_in_grpo": True, "coars": {"self_distill": {"lambda_decay_fraction": None, **self_distill}}})


def test_registered_under_its_name_and_needs_the_roles():
    fn = get_adv_estimator_fn(ADV_ESTIMATOR_NAME)
    rewards, mask = _inputs()
    with pytest.raises(ValueError, match="trainer_mode=coars_sync"):
        fn(token_level_rewards=rewards, response_mask=mask, index=UIDS, config=_config())


@pytest.mark.parametrize("delta", [None, "random"])
def test_off_equals_verl_grpo_per_uid_and_role(delta):
    fn = get_adv_estimator_fn(ADV_ESTIMATOR_NAME)
    rewards, mask = _inputs()
    d = None if delta is None else torch.randn_like(mask)
    adv, _ = fn(token_level_rewards=rewards, response_mask=mask, index=UIDS, config=_config(mode="off"), roles=ROLES, self_distill_delta=d)
    expected, _ = compute_grpo_outcome_advantage(rewards, mask, index=[f"{u}|{r}" for u, r in zip(UIDS, ROLES)])
    assert torch.equal(adv, expected)


def test_rlsd_reshapes_tokens_but_keeps_each_tokens_sign():
    fn = get_adv_estimator_fn(ADV_ESTIMATOR_NAME)
    rewards, mask = _inputs()
    torch.manual_seed(0)
    delta = torch.randn_like(mask) * mask
    outcome, _ = fn(token_level_rewards=rewards, response_mask=mask, index=UIDS, config=_config(mode="off"), roles=ROLES)
    shaped, returns = fn(token_level_rewards=rewards, response_mask=mask, index=UIDS, config=_config(mode="rlsd", lam0=0.5), roles=ROLES, self_distill_delta=delta, global_step=0)
    assert not torch.equal(shaped, outcome)
    assert torch.equal(torch.sign(shaped), torch.sign(outcome))
    assert torch.equal(shaped * (1 - mask), torch.zeros_like(mask))
    assert torch.equal(returns, shaped)
    # lambda decayed to 0: the outcome advantage again
    decayed, _ = fn(token_level_rewards=rewards, response_mask=mask, index=UIDS, config=_config(mode="rlsd", lambda_decay_steps=10), roles=ROLES, self_distill_delta=delta, global_step=10)
    assert torch.allclose(decayed, outcome)


def test_clip_hits_follow_the_mode():
    adv = torch.tensor([[1.0, 1.0, -1.0, 0.5]])
    delta = torch.tensor([[0.1, 0.5, 0.5, -2.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    rlsd = clip_hit_mask(SelfDistillConfig(mode="rlsd", eps_w=0.2), adv, delta, mask)
    assert rlsd.tolist() == [[False, True, True, False]]  # exp(0.1) inside, exp(+-0.5) outside, masked token never
    additive = clip_hit_mask(SelfDistillConfig(mode="additive", clip=0.3), adv, delta, mask)
    assert additive.tolist() == [[False, True, True, False]]
    assert not clip_hit_mask(SelfDistillConfig(mode="off"), adv, delta, mask).any()
