"""The CPU path's attention without verl's right-padding mask (coars_verl.cpu.activate) gives the
real positions of a right-padded micro-batch verl's own logits and gradients through torch's fused
causal kernel: a patch that verl's engine never picked up, one that let transformers build a mask
anyway (a None mask: padding positions read as packed sequences), or one that changed real
positions' values fails."""

import torch.nn.functional as F

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from verl.workers.engine.fsdp import transformer_impl
from verl.workers.utils import padding

from coars_verl.cpu import activate


@pytest.fixture
def causal_only(monkeypatch):
    original = padding.build_attention_mask_from_nested
    assert not getattr(original, "_coars_causal_only", False)  # this process did not ask for the CPU platform
    monkeypatch.setattr(padding, "build_attention_mask_from_nested", original)  # both restored after the test
    monkeypatch.setattr(transformer_impl, "build_attention_mask_from_nested", original)
    activate._causal_attention_for_right_padding()
    return original


def tiny_model() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, attn_implementation="sdpa")
    return Qwen2ForCausalLM(config)


def right_padded_batch(lengths):
    """verl's no-remove-padding layout: nested input ids, padded on the right to the longest row."""
    torch.manual_seed(1)
    nested = torch.nested.nested_tensor([torch.randint(1, 97, (n,)) for n in lengths], layout=torch.jagged)
    width = max(lengths)
    input_ids = torch.nested.to_padded_tensor(nested, padding=0, output_size=(len(lengths), width))
    positions = torch.arange(width).expand(len(lengths), width) * (torch.arange(width) < torch.tensor(lengths)[:, None])
    return nested, input_ids, positions


def logits_and_grads(model, input_ids, positions, mask, lengths):
    model.zero_grad()
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
    real = [logits[i, :n] for i, n in enumerate(lengths)]
    torch.cat(real).logsumexp(-1).sum().backward()  # any loss over the real positions only
    return [r.detach() for r in real], {name: p.grad.clone() for name, p in model.named_parameters()}


def test_engine_uses_the_patched_builder_and_gets_no_mask(causal_only):
    assert transformer_impl.build_attention_mask_from_nested is padding.build_attention_mask_from_nested
    nested, _, _ = right_padded_batch([5, 3])
    assert causal_only(nested).tolist() == [[1] * 5, [1] * 3 + [0] * 2]  # verl's own: right padding
    assert padding.build_attention_mask_from_nested(nested).tolist() == [[1] * 5, [1] * 5]
    assert padding.build_attention_mask_from_nested(nested, max_seq_len=7).shape == (2, 7)


def test_the_model_gets_the_fused_causal_kernel(causal_only, monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, **kwargs):
        calls.append((attn_mask, kwargs.get("is_causal")))
        return sdpa(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    lengths = [12, 4, 9]
    nested, input_ids, positions = right_padded_batch(lengths)
    model = tiny_model()
    with torch.no_grad():  # use_cache=False as verl's engine calls it: no cache, so transformers looks for packing
        model(input_ids=input_ids, attention_mask=padding.build_attention_mask_from_nested(nested), position_ids=positions, use_cache=False)
        assert calls and all(mask is None and causal for mask, causal in calls)
        calls.clear()
        model(input_ids=input_ids, attention_mask=causal_only(nested), position_ids=positions, use_cache=False)
        assert calls and all(mask is not None and not causal for mask, causal in calls)  # verl's mask: the math kernel


def test_right_padded_rows_get_verls_logits_and_gradients(causal_only):
    lengths = [23, 9, 17, 1]
    model = tiny_model()
    nested, input_ids, positions = right_padded_batch(lengths)
    expected, expected_grads = logits_and_grads(model, input_ids, positions, causal_only(nested), lengths)
    got, got_grads = logits_and_grads(model, input_ids, positions, padding.build_attention_mask_from_nested(nested), lengths)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_left_padding_would_need_the_mask():
    """Why the patch is only right for right padding: the same rows padded on the left differ without a mask."""
    lengths = [23, 9]
    model = tiny_model()
    _, input_ids, _ = right_padded_batch(lengths)
    left = torch.stack([torch.roll(row, shifts=23 - n) for row, n in zip(input_ids, lengths)])
    mask = (torch.arange(23) >= 23 - torch.tensor(lengths)[:, None]).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        masked = model(input_ids=left, attention_mask=mask, position_ids=positions).logits[1, -9:]
        unmasked = model(input_ids=left, attention_mask=None, position_ids=positions).logits[1, -9:]
    assert not torch.allclose(masked, unmasked, atol=1e-3)
