"""Hand-computed checks of coars_verl.algo.advantage."""

import math

import pytest
import torch

from coars_verl.algo.advantage import (
    apply_self_distill,
    clip_hit_mask,
    combine,
    combine_additive,
    combine_rlsd,
    delta_stats,
    role_group_outcome_advantage,
    token_delta,
)
from coars_verl.distill.config import SelfDistillConfig, lambda_schedule

REC, USER = "recommender", "user"


# ------------------------------------------------------------------------ per-role GRPO
def test_role_group_grpo_hand_computed():
    scores = torch.tensor([1.0, 0.0, 1.0, 0.5, 3.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float32)
    groups = [("u1", REC), ("u1", REC), ("u1", USER), ("u1", USER), ("u2", REC)]
    adv, ret = role_group_outcome_advantage(scores, mask, groups)
    a = 0.5 / (math.sqrt(0.5) + 1e-6)  # both groups: deviation 0.5 (resp. 0.25) over std sqrt(.5) (resp. sqrt(.125))
    expected = torch.tensor([[a, a, 0], [-a, 0, 0], [a, a, a], [-a, -a, 0], [3.0 / (1 + 1e-6), 0, 0]])
    torch.testing.assert_close(adv, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(adv, ret) and adv.data_ptr() != ret.data_ptr()


def test_role_group_grpo_roles_are_separate_groups():
    # Same uid, two roles: the recommender's scores must not shift the user's baseline.
    scores = torch.tensor([10.0, 20.0, 0.0, 1.0])
    mask = torch.ones(4, 2)
    adv, _ = role_group_outcome_advantage(scores, mask, [("p", REC), ("p", REC), ("p", USER), ("p", USER)])
    torch.testing.assert_close(adv[:, 0], torch.tensor([-1.0, 1.0, -1.0, 1.0]) / math.sqrt(2), rtol=1e-5, atol=1e-5)


def test_role_group_grpo_without_std_and_equal_scores():
    scores = torch.tensor([1.0, 3.0, 2.0, 2.0])
    mask = torch.ones(4, 1)
    adv, _ = role_group_outcome_advantage(scores, mask, ["a", "a", "b", "b"], norm_by_std=False)
    assert adv[:, 0].tolist() == [-1.0, 1.0, 0.0, 0.0]
    adv, _ = role_group_outcome_advantage(scores, mask, ["a", "a", "b", "b"])
    assert adv[2:, 0].tolist() == [0.0, 0.0]  # std 0: (s - mean) = 0 exactly


def test_role_group_grpo_validates_inputs():
    with pytest.raises(ValueError, match="group_ids"):
        role_group_outcome_advantage(torch.zeros(2), torch.ones(2, 3), ["a"])
    with pytest.raises(ValueError, match="1-D"):
        role_group_outcome_advantage(torch.zeros(2, 1), torch.ones(2, 3), ["a", "b"])
    with pytest.raises(ValueError, match="response_mask"):
        role_group_outcome_advantage(torch.zeros(2), torch.ones(3, 3), ["a", "b"])


def test_role_group_grpo_int_scores_and_bool_mask():
    adv, _ = role_group_outcome_advantage(torch.tensor([0, 1]), torch.tensor([[True, False], [True, True]]), ["g", "g"])
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv, torch.tensor([[-0.5, 0.0], [0.5, 0.5]]) / (math.sqrt(0.5) + 1e-6))


# ------------------------------------------------------------------------------- delta
def test_token_delta_masks_and_detaches():
    teacher = torch.tensor([[-1.0, -2.0, float("nan")], [-0.5, -0.5, -0.5]], requires_grad=True)
    student = torch.tensor([[-1.5, -1.0, -3.0], [-1.0, -1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    delta = token_delta(teacher, student, mask, torch.tensor([True, False]))
    assert not delta.requires_grad
    assert torch.equal(delta, torch.tensor([[0.5, -1.0, 0.0], [0.0, 0.0, 0.0]]))


# ----------------------------------------------------------------------------- combine
def test_combine_rlsd_hand_computed():
    adv = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0], [-2.0, -2.0, -2.0, -2.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    delta = torch.tensor([[0.1, 0.5, -0.5, 0.0, 9.0]] * 3)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    adv_t = combine_rlsd(adv, delta, mask, lam=0.5, eps_w=0.2)
    hit = clip_hit_mask(SelfDistillConfig(mode="rlsd", eps_w=0.2), adv_t, delta, mask)
    e = math.exp(0.1)
    expected = torch.tensor([
        [0.5 + 0.5 * e, 1.1, 0.9, 1.0, 0.0],
        [-2 * (0.5 + 0.5 / e), -1.8, -2.2, -2.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
    ])
    torch.testing.assert_close(adv_t, expected)
    assert hit.tolist() == [[False, True, True, False, False], [False, True, True, False, False], [False] * 5]


def test_combine_rlsd_lambda_zero_and_one():
    adv = torch.full((1, 3), 2.0)
    delta = torch.tensor([[1.0, -1.0, 0.05]])
    mask = torch.ones(1, 3)
    assert torch.equal(combine_rlsd(adv, delta, mask, lam=0.0, eps_w=0.2), adv)
    torch.testing.assert_close(combine_rlsd(adv, delta, mask, lam=1.0, eps_w=0.2),
                               torch.tensor([[2.4, 1.6, 2.0 * math.exp(0.05)]]))


def test_combine_additive_hand_computed():
    adv = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    delta = torch.tensor([[0.1, 2.0, -3.0, 0.0, 5.0], [0.5, -0.5, 1.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    adv_t = combine_additive(adv, delta, mask, eta=0.1, clip_c=1.0)
    hit = clip_hit_mask(SelfDistillConfig(mode="additive", clip=1.0), adv_t, delta, mask)
    torch.testing.assert_close(adv_t, torch.tensor([[1.01, 1.1, 0.9, 1.0, 0.0], [0.05, -0.05, 0.1, -0.1, 0.0]]))
    assert hit.tolist() == [[False, True, True, False, False], [False] * 5]


def test_combine_dispatch_and_off():
    adv = torch.tensor([[0.3, -0.0, 0.0]])
    delta = torch.tensor([[5.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    out = combine("off", adv, delta, mask)
    assert torch.equal(out, adv) and out.data_ptr() != adv.data_ptr()
    assert not clip_hit_mask(SelfDistillConfig(mode="off"), out, delta, mask).any()
    assert torch.equal(combine("rlsd", adv, delta, mask, lam=0.3, eps_w=0.1),
                       combine_rlsd(adv, delta, mask, lam=0.3, eps_w=0.1))
    assert torch.equal(combine("additive", adv, delta, mask, eta=0.2, clip_c=2.0),
                       combine_additive(adv, delta, mask, eta=0.2, clip_c=2.0))
    with pytest.raises(ValueError, match="unknown self-distillation mode 'rlsdd'"):
        combine("rlsdd", adv, delta, mask)


def test_combine_rejects_bad_arguments():
    adv, mask = torch.ones(1, 2), torch.ones(1, 2)
    with pytest.raises(ValueError, match="lam"):
        combine_rlsd(adv, adv, mask, lam=1.5, eps_w=0.2)
    with pytest.raises(ValueError, match="eps_w"):
        combine_rlsd(adv, adv, mask, lam=0.5, eps_w=1.0)
    with pytest.raises(ValueError, match="clip_c"):
        combine_additive(adv, adv, mask, eta=0.1, clip_c=-1.0)
    with pytest.raises(ValueError, match="must all be"):
        combine_rlsd(adv, torch.ones(1, 3), mask, lam=0.5, eps_w=0.2)


# ---------------------------------------------------------------------------- schedule
def test_lambda_schedule_endpoints():
    assert lambda_schedule(0, 0.5, 100) == 0.5
    assert lambda_schedule(50, 0.5, 100) == 0.25
    assert lambda_schedule(100, 0.5, 100) == 0.0
    assert lambda_schedule(1000, 0.5, 100) == 0.0
    assert lambda_schedule(-5, 0.5, 100) == 0.5
    assert lambda_schedule(10_000, 0.4, 0) == 0.4
    assert lambda_schedule(10_000, 0.4, -1) == 0.4
    with pytest.raises(ValueError):
        lambda_schedule(0, 1.5, 10)


# ------------------------------------------------------------------------------ config
def test_config_defaults_follow_the_spec():
    cfg = SelfDistillConfig()
    assert (cfg.mode, cfg.lam0, cfg.eps_w, cfg.teacher) == ("rlsd", 0.5, 0.2, "policy")
    assert cfg.sources == ("memory", "sibling", "hindsight")
    assert cfg.lambda_decay_fraction == 0.5  # lambda reaches 0 halfway through the run
    run = cfg.for_run(10)
    assert run.lam_at(0) == 0.5 and run.lam_at(5) == 0.0
    with pytest.raises(Exception):
        cfg.mode = "off"  # frozen


def test_config_from_mapping():
    from omegaconf import OmegaConf

    cfg = SelfDistillConfig.from_mapping(OmegaConf.create({"mode": "additive", "eta": 1, "sources": ["hindsight", "target"],
                                                           "lambda_decay_steps": 7.0}))
    assert cfg.mode == "additive" and cfg.eta == 1.0 and isinstance(cfg.eta, float)
    assert cfg.sources == ("hindsight", "target") and cfg.lambda_decay_steps == 7
    assert SelfDistillConfig.from_mapping({"sources": "sibling, memory"}).sources == ("sibling", "memory")
    assert SelfDistillConfig.from_mapping(None) == SelfDistillConfig()
    with pytest.raises(ValueError, match=r"\['bogus', 'lambda'\]"):
        SelfDistillConfig.from_mapping({"lambda": 0.5, "bogus": 1, "mode": "off"})
    for bad in ({"mode": "kl"}, {"teacher": "gpt"}, {"sources": ["memory", "oracle"]}, {"sources": ["memory", "memory"]},
                {"lam0": 2.0}, {"eps_w": 1.0}, {"clip": -1}, {"memory_per_user": 0}, {"lam0": "0.5"}, {"lambda_decay_steps": 7.5}):
        with pytest.raises(ValueError):
            SelfDistillConfig.from_mapping(bad)


def test_apply_self_distill_uses_schedule():
    adv, delta, mask = torch.full((1, 2), 1.0), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)
    cfg = SelfDistillConfig(lam0=0.5, lambda_decay_steps=10, lambda_decay_fraction=None)
    torch.testing.assert_close(apply_self_distill(cfg, adv, delta, mask, step=5), torch.tensor([[1.05, 0.95]]))
    assert torch.equal(apply_self_distill(cfg, adv, delta, mask, step=10), adv)
    assert torch.equal(apply_self_distill(SelfDistillConfig(mode="off", lambda_decay_fraction=None), adv, delta, mask, step=0), adv)


# ----------------------------------------------------------------------------- metrics
def test_delta_stats_hand_computed():
    delta = torch.tensor([[1.0, 3.0, 9.0], [-2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    hit = torch.tensor([[False, True, False], [True, False, False], [False] * 3])
    stats = delta_stats(delta, mask, [REC, USER, USER], clip_hit_mask=hit, has_context=torch.tensor([True, True, False]))
    assert stats["coars_sd/recommender/delta_mean"] == 2.0
    assert stats["coars_sd/recommender/delta_std"] == 1.0
    assert stats["coars_sd/recommender/clip_share"] == 0.5
    assert stats["coars_sd/recommender/context_share"] == 1.0
    assert stats["coars_sd/user/tokens"] == 1.0 and stats["coars_sd/user/delta_mean"] == -2.0
    assert stats["coars_sd/user/delta_std"] == 0.0 and stats["coars_sd/user/context_share"] == 0.5
    assert stats["coars_sd/all/tokens"] == 3.0 and stats["coars_sd/all/delta_mean"] == pytest.approx(2 / 3)
    assert stats["coars_sd/all/clip_share"] == pytest.approx(2 / 3)
    no_ctx = delta_stats(delta, mask, [REC, USER, USER], has_context=torch.zeros(3, dtype=torch.bool))
    assert no_ctx["coars_sd/user/delta_mean"] == 0.0 and no_ctx["coars_sd/user/tokens"] == 0.0
    assert "coars_sd/user/clip_share" not in no_ctx
