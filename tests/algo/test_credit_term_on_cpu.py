"""The credit dump's per-token teacher term is the one combine uses: rebuilding A_t from it gives
combine's output (a second copy of the formula that drifted would fail here)."""

import pytest
import torch

from coars_verl.algo.advantage import additive_term, combine, credit_term, rlsd_weight


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    adv = torch.randn(4, 7, generator=g)
    adv[2] = 0.0  # a tied group: sign 0
    mask = (torch.rand(4, 7, generator=g) > 0.3).float()
    adv = adv * mask
    delta = torch.randn(4, 7, generator=g) * 0.8
    return adv, delta, mask


@pytest.mark.parametrize("lam,eps_w", [(0.5, 0.2), (1.0, 0.5), (0.3, 0.0)])
def test_rlsd_weight_rebuilds_combine(lam, eps_w):
    adv, delta, mask = _batch()
    w = credit_term("rlsd", adv, delta, mask, eps_w=eps_w)
    expected = combine("rlsd", adv, delta, mask, lam=lam, eps_w=eps_w)
    torch.testing.assert_close(adv * ((1 - lam) + lam * w) * mask, expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(w, rlsd_weight(adv, delta, mask, eps_w))
    assert (w >= 1 - eps_w).all() and (w <= 1 + eps_w).all()
    assert torch.all(w[mask == 0] == 1.0)  # delta is zeroed off the mask


@pytest.mark.parametrize("eta,clip_c", [(0.1, 1.0), (0.5, 0.2)])
def test_additive_term_rebuilds_combine(eta, clip_c):
    adv, delta, mask = _batch(1)
    term = credit_term("additive", adv, delta, mask, eta=eta, clip_c=clip_c)
    assert torch.equal((adv + term) * mask, combine("additive", adv, delta, mask, eta=eta, clip_c=clip_c))
    assert torch.equal(term, additive_term(delta, mask, eta, clip_c))


def test_weight_follows_the_sign_of_the_advantage_not_of_delta_alone():
    adv = torch.tensor([[1.0, -1.0]])
    delta = torch.tensor([[0.1, 0.1]])
    w = credit_term("rlsd", adv, delta, torch.ones(1, 2), eps_w=0.5)
    assert w[0, 0] > 1 > w[0, 1]


def test_off_has_no_term_and_unknown_modes_fail():
    adv, delta, mask = _batch()
    assert credit_term("off", adv, delta, mask) is None
    with pytest.raises(ValueError, match="unknown self-distillation mode"):
        credit_term("rlsdd", adv, delta, mask)
