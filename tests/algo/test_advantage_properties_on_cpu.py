"""Hypothesis properties of the advantage math, and equality with verl's GRPO per (uid, role)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coars_verl.algo.advantage import (
    clip_hit_mask,
    combine,
    combine_additive,
    combine_rlsd,
    role_group_outcome_advantage,
    token_delta,
)
from coars_verl.distill.config import SelfDistillConfig, lambda_schedule

ROLES = ("recommender", "user")
FLOATS = st.floats(-1e3, 1e3, width=32, allow_subnormal=False)
SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def batches(draw, with_zero_adv=True):
    """(adv (B,R) broadcast outcome advantage, delta (B,R), mask (B,R) with >= 1 valid token per row)."""
    b = draw(st.integers(1, 6))
    r = draw(st.integers(1, 7))
    per_row = st.one_of(st.just(0.0), FLOATS) if with_zero_adv else FLOATS
    a = torch.tensor(draw(st.lists(per_row, min_size=b, max_size=b)), dtype=torch.float32)
    lengths = draw(st.lists(st.integers(1, r), min_size=b, max_size=b))
    mask = (torch.arange(r).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).float()
    delta = torch.tensor(draw(st.lists(st.floats(-20, 20, width=32), min_size=b * r, max_size=b * r))).view(b, r)
    return a.unsqueeze(-1) * mask, delta, mask


@st.composite
def grouped_scores(draw):
    """scores (B,), mask (B,R), uids, roles -- groups of size 1..4, with ties among scores."""
    b = draw(st.integers(1, 12))
    r = draw(st.integers(1, 5))
    scores = draw(st.lists(st.one_of(st.sampled_from([0.0, 0.5, 1.0, 1.5]), st.floats(-5, 5, width=32)),
                           min_size=b, max_size=b))
    uids = draw(st.lists(st.sampled_from(["p0", "p1", "p2"]), min_size=b, max_size=b))
    roles = draw(st.lists(st.sampled_from(ROLES), min_size=b, max_size=b))
    lengths = draw(st.lists(st.integers(1, r), min_size=b, max_size=b))
    mask = (torch.arange(r).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).float()
    return torch.tensor(scores, dtype=torch.float32), mask, uids, roles


@SETTINGS
@given(batches(), st.floats(0, 1), st.floats(0, 0.99))
def test_rlsd_keeps_the_sign_of_the_outcome_advantage(batch, lam, eps_w):
    adv, delta, mask = batch
    adv_t = combine_rlsd(adv, delta, mask, lam=lam, eps_w=eps_w)
    valid = mask.bool()
    assert torch.equal(torch.sign(adv_t)[valid], torch.sign(adv)[valid])
    assert (adv_t[adv == 0] == 0).all()
    # and the magnitude stays within the rlsd band
    ratio = (adv_t[adv != 0] / adv[adv != 0])
    assert ((ratio >= 1 - lam * eps_w - 1e-5) & (ratio <= 1 + lam * eps_w + 1e-5)).all()


@SETTINGS
@given(batches(), st.floats(0, 1), st.floats(0, 0.99), st.floats(-2, 2), st.floats(0, 5))
def test_zero_delta_gives_back_the_outcome_advantage(batch, lam, eps_w, eta, clip_c):
    adv, _, mask = batch
    zero = torch.zeros_like(adv)
    assert torch.equal(combine_rlsd(adv, zero, mask, lam=lam, eps_w=eps_w), adv)
    assert torch.equal(combine_additive(adv, zero, mask, eta=eta, clip_c=clip_c), adv)
    assert not clip_hit_mask(SelfDistillConfig(mode="rlsd", eps_w=eps_w), adv, zero, mask).any()


@SETTINGS
@given(batches(), st.sampled_from(["rlsd", "additive", "off"]), st.floats(0, 1), st.floats(0, 0.99))
def test_masked_positions_stay_zero(batch, mode, lam, eps_w):
    adv, delta, mask = batch
    delta = torch.where(mask.bool(), delta, torch.full_like(delta, float("nan")))  # garbage where masked
    adv_t = combine(mode, adv, delta, mask, lam=lam, eps_w=eps_w, eta=0.5, clip_c=1.0)
    hit = clip_hit_mask(SelfDistillConfig(mode=mode, eps_w=eps_w, clip=1.0), adv_t, delta, mask)
    assert (adv_t[~mask.bool()] == 0).all()
    assert not hit[~mask.bool()].any()
    assert torch.isfinite(adv_t).all()


@SETTINGS
@given(batches(), st.floats(-2, 2), st.floats(0, 5))
def test_additive_moves_each_token_by_at_most_eta_c(batch, eta, clip_c):
    adv, delta, mask = batch
    adv_t = combine_additive(adv, delta, mask, eta=eta, clip_c=clip_c)
    assert ((adv_t - adv).abs() <= abs(eta) * clip_c * (1 + 1e-5) + 1e-3).all()


@SETTINGS
@given(grouped_scores(), st.booleans())
def test_off_equals_per_role_grpo_exactly(data, norm):
    scores, mask, uids, roles = data
    adv, _ = role_group_outcome_advantage(scores, mask, list(zip(uids, roles)), norm_by_std=norm)
    delta = torch.randn(mask.shape)
    assert torch.equal(combine("off", adv, delta, mask), adv)


@SETTINGS
@given(grouped_scores())
def test_token_delta_zero_without_context_or_mask(data):
    scores, mask, _, _ = data
    b, r = mask.shape
    teacher, student = torch.randn(b, r), torch.randn(b, r)
    has_ctx = scores > 0
    delta = token_delta(teacher, student, mask, has_ctx)
    keep = mask.bool() & has_ctx.unsqueeze(-1)
    assert (delta[~keep] == 0).all()
    assert torch.equal(delta[keep], (teacher - student)[keep])


@settings(max_examples=100, deadline=None)
@given(st.integers(-10, 500), st.floats(0, 1), st.integers(-3, 200))
def test_lambda_schedule_is_clamped_and_monotone(step, lam0, n):
    lam = lambda_schedule(step, lam0, n)
    assert 0.0 <= lam <= lam0
    assert lambda_schedule(step + 1, lam0, n) <= lam
    if n > 0 and step >= n:
        assert lam == 0.0
    if n <= 0 or step <= 0:
        assert lam == lam0


# ------------------------------------------------------------------------- equality with verl
core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")


def _verl_grpo(scores, mask, uids, roles, norm):
    last = mask.sum(-1).long() - 1
    token_level_rewards = torch.zeros_like(mask)
    token_level_rewards[torch.arange(len(scores)), last] = scores
    index = np.array([f"{u}/{r}" for u, r in zip(uids, roles)], dtype=object)
    return core_algos.compute_grpo_outcome_advantage(token_level_rewards, mask, index, norm_adv_by_std_in_grpo=norm)


@settings(max_examples=40, deadline=None)
@given(grouped_scores(), st.booleans())
def test_per_role_grpo_equals_verl_grpo_per_uid_role(data, norm):
    scores, mask, uids, roles = data
    ours, ours_ret = role_group_outcome_advantage(scores, mask, list(zip(uids, roles)), norm_by_std=norm)
    theirs, theirs_ret = _verl_grpo(scores, mask, uids, roles, norm)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours_ret, theirs_ret)


def test_per_role_grpo_equals_verl_on_a_realistic_batch():
    gen = torch.Generator().manual_seed(0)
    n_prompts, n_rollouts, r = 4, 8, 16
    uids = [f"uid{p}" for p in range(n_prompts) for _ in range(n_rollouts) for _ in ROLES]
    roles = [role for _ in range(n_prompts * n_rollouts) for role in ROLES]
    scores = torch.rand(len(uids), generator=gen) * 1.5
    lengths = torch.randint(1, r + 1, (len(uids),), generator=gen)
    mask = (torch.arange(r).unsqueeze(0) < lengths.unsqueeze(1)).float()
    for norm in (True, False):
        ours, _ = role_group_outcome_advantage(scores, mask, list(zip(uids, roles)), norm_by_std=norm)
        theirs, _ = _verl_grpo(scores, mask, uids, roles, norm)
        assert torch.equal(ours, theirs)
