"""Skipping the teacher where it cannot change the credit changes no advantage.

The trainer scores only the samples :func:`teacher_needed` selects; every other sample gets delta 0.
Here the same batch is combined with the teacher's delta on every sample and with the delta kept
only where needed: the advantages must be identical, so the saving is free.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coars_verl.algo.advantage import (
    SKIP_NO_TEACHER_WEIGHT,
    SKIP_ZERO_ADVANTAGE,
    apply_self_distill,
    role_group_outcome_advantage,
    teacher_needed,
)
from coars_verl.distill.config import SelfDistillConfig

WIDTH = 6


def _batch(group_scores):
    """Groups of (uid, role) with the given scores; returns outcome advantages and the mask."""
    scores, keys = [], []
    for g, members in enumerate(group_scores):
        for score in members:
            scores.append(score)
            keys.append((f"p{g}", "recommender"))
    scores = torch.tensor(scores, dtype=torch.float32)
    mask = torch.ones(len(scores), WIDTH)
    mask[::3, 4:] = 0  # some shorter responses
    adv, _ = role_group_outcome_advantage(scores, mask, keys)
    return adv, mask


def test_tied_groups_need_no_teacher_under_rlsd():
    adv, mask = _batch([[1.0, 1.0, 1.0], [0.0, 0.0], [0.2, 1.0, 0.2]])
    needed, skipped = teacher_needed(SelfDistillConfig(mode="rlsd").for_run(100), adv, mask, step=0)
    assert needed.tolist() == [False, False, False, False, False, True, True, True]
    assert skipped == {SKIP_ZERO_ADVANTAGE: 5}


def test_no_teacher_weight_means_no_teacher_pass():
    adv, mask = _batch([[0.2, 1.0]])
    lam_gone = SelfDistillConfig(mode="rlsd", lam0=0.5, lambda_decay_steps=10, lambda_decay_fraction=None)
    needed, skipped = teacher_needed(lam_gone, adv, mask, step=10)
    assert not needed.any() and skipped == {SKIP_NO_TEACHER_WEIGHT: 2}
    assert teacher_needed(lam_gone, adv, mask, step=9)[0].all()  # lambda is still 0.05
    assert not teacher_needed(SelfDistillConfig(mode="additive", eta=0.0), adv, mask, 0)[0].any()
    # additive adds credit even where the outcome advantage is 0: a tied group is still scored
    tied, tied_mask = _batch([[1.0, 1.0]])
    assert teacher_needed(SelfDistillConfig(mode="additive"), tied, tied_mask, 0)[0].all()


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=4), min_size=1, max_size=5),
    mode=st.sampled_from(["rlsd", "additive"]),
    step=st.integers(0, 120),
    seed=st.integers(0, 2**16),
)
def test_advantages_are_identical_with_and_without_the_skip(groups, mode, step, seed):
    adv, mask = _batch(groups)
    delta = torch.randn(adv.shape, generator=torch.Generator().manual_seed(seed)) * mask
    cfg = SelfDistillConfig(mode=mode, lambda_decay_steps=100, lambda_decay_fraction=None)
    full = apply_self_distill(cfg, adv, delta, mask, step)
    needed, _ = teacher_needed(cfg, adv, mask, step)
    skipped = apply_self_distill(cfg, adv, delta * needed.unsqueeze(-1), mask, step)
    assert torch.equal(full, skipped)


def test_lambda_decay_as_a_share_of_the_run():
    cfg = SelfDistillConfig(lam0=0.5, lambda_decay_steps=100, lambda_decay_fraction=0.5)
    run = cfg.for_run(3000)
    assert run.lambda_decay_steps == 1500 and run.lam_at(750) == pytest.approx(0.25) and run.lam_at(1500) == 0.0
    assert SelfDistillConfig(lambda_decay_steps=100, lambda_decay_fraction=None).for_run(3000).lambda_decay_steps == 100  # no fraction: steps
    assert SelfDistillConfig().for_run(30).lambda_decay_steps == 15  # the default: half the run
    assert SelfDistillConfig(lambda_decay_fraction=0.5).for_run(1).lambda_decay_steps == 1
    with pytest.raises(ValueError, match="lambda_decay_fraction"):
        SelfDistillConfig(lambda_decay_fraction=1.5)
    assert SelfDistillConfig.from_mapping({"lambda_decay_fraction": None}).lambda_decay_fraction is None


def test_a_share_of_the_run_has_no_lambda_until_the_run_is_known():
    """No silent fallback to ``lambda_decay_steps`` (the GPU recipes' bug: lambda 0.5, then 0 from step 2)."""
    cfg = SelfDistillConfig(lam0=0.5, lambda_decay_steps=1, lambda_decay_fraction=0.5)
    with pytest.raises(ValueError, match="for_run"):
        cfg.lam_at(1)
    run = cfg.for_run(4)
    assert [run.lam_at(s) for s in range(4)] == [0.5, 0.25, 0.0, 0.0]
    assert run.for_run(1000) == run  # resolved once: a second call changes nothing
    with pytest.raises(ValueError, match="training steps"):
        cfg.for_run(0)
