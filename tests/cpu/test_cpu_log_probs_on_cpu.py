"""The CPU path's blockwise log-prob (coars_verl.cpu.activate) gives verl's own values and
gradients: a block boundary off by one, a wrong row/label pairing or a missing normaliser fails."""

import pytest
import torch
from verl.utils import torch_functional

from coars_verl.cpu import activate


@pytest.fixture
def blockwise(monkeypatch):
    original = torch_functional.logprobs_from_logits_v2
    assert not getattr(original, "_coars_blockwise", False)  # this process did not ask for the CPU platform
    monkeypatch.setattr(torch_functional, "logprobs_from_logits_v2", original)  # restored after the test
    monkeypatch.setattr(activate, "LOG_PROB_BLOCK_ROWS", 7)  # several blocks and a ragged last one
    activate._blockwise_log_probs()
    patched = torch_functional.logprobs_from_logits_v2
    assert patched is not original and patched._coars_blockwise
    return original, patched


@pytest.mark.parametrize("shape", [(50, 33), (3, 17, 33), (0, 33)])
def test_blockwise_log_probs_equal_verls_values_and_gradients(blockwise, shape):
    original, patched = blockwise
    torch.manual_seed(0)
    logits = torch.randn(*shape, dtype=torch.float32) * 4
    labels = torch.randint(0, shape[-1], shape[:-1])
    if logits.numel() == 0:  # verl's own function fails here (it stacks an empty list)
        assert patched(logits, labels).shape == labels.shape
        return
    ours_in, theirs_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours, theirs = patched(ours_in, labels), original(theirs_in, labels)
    assert ours.shape == theirs.shape == labels.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    weights = torch.randn_like(ours)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, rtol=1e-6, atol=1e-6)
    # a log-probability: exp over the vocabulary sums to one at every position
    full = torch.stack([patched(logits, torch.full_like(labels, v)) for v in range(shape[-1])], dim=-1)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(shape[:-1]), rtol=1e-5, atol=1e-5)


def test_bfloat16_keeps_verls_own_path(blockwise):
    original, patched = blockwise
    logits = torch.randn(5, 11).to(torch.bfloat16)
    labels = torch.randint(0, 11, (5,))
    assert torch.equal(patched(logits, labels), original(logits, labels))
