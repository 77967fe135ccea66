"""The hf rollout engine against plain transformers: tokens, log-probs, prompt log-probs."""

import pytest
import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

from coars_verl.cpu.hf_engine import GenerationRequest, HFGenerationEngine, PromptSeeds, SamplingSettings, process_logits

EOS = 3
PAD = 0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, eos_token_id=EOS, pad_token_id=PAD,
        attn_implementation="sdpa",
    )
    return Qwen2ForCausalLM(config).eval()


def _engine(model):
    return HFGenerationEngine(model, eos_token_ids=[EOS], pad_token_id=PAD, seed=0)


PROMPTS = [[5, 9, 11, 40, 2], [7, 8], [60, 61, 62, 63, 64, 65, 66, 67]]


def _reference_greedy(model, prompt, max_new):
    out = model.generate(
        torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), max_new_tokens=max_new,
        do_sample=False, eos_token_id=EOS, pad_token_id=PAD,
    )
    return out[0, len(prompt):].tolist()


def _sequence_logprobs(model, prompt, response):
    """log p(response_t | prompt, response_<t) from one forward pass over the whole sequence."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    lp = F.log_softmax(logits, dim=-1)
    return [float(lp[len(prompt) - 1 + t, tok]) for t, tok in enumerate(response)]


def test_greedy_batch_matches_transformers_generate(model):
    engine = _engine(model)
    requests = [GenerationRequest(p, SamplingSettings(max_tokens=12, temperature=0.0, want_logprobs=True)) for p in PROMPTS]
    results = engine.generate(requests)
    for prompt, res in zip(PROMPTS, results):
        expected = _reference_greedy(model, prompt, 12)
        if EOS in expected:  # transformers pads after EOS; the engine stops there
            expected = expected[: expected.index(EOS) + 1]
        assert res.token_ids == expected
        assert res.log_probs == pytest.approx(_sequence_logprobs(model, prompt, res.token_ids), abs=1e-4)
        assert res.finish_reason == ("stop" if res.token_ids[-1] == EOS else "length")


def test_sampled_logprobs_are_temperature_scaled_logprobs_of_the_sampled_tokens(model):
    engine = _engine(model)
    temperature = 0.7
    res = engine.generate([GenerationRequest(PROMPTS[0], SamplingSettings(max_tokens=10, temperature=temperature, want_logprobs=True, seed=3))])[0]
    ids = torch.tensor([PROMPTS[0] + res.token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float() / temperature
    lp = F.log_softmax(logits, dim=-1)
    expected = [float(lp[len(PROMPTS[0]) - 1 + t, tok]) for t, tok in enumerate(res.token_ids)]
    assert res.log_probs == pytest.approx(expected, abs=1e-4)


def test_seeded_sampling_is_reproducible_and_independent_of_batch_mates(model):
    engine = _engine(model)
    alone = engine.generate([GenerationRequest(PROMPTS[1], SamplingSettings(max_tokens=8, seed=11))])[0]
    batched = engine.generate(
        [GenerationRequest(PROMPTS[0], SamplingSettings(max_tokens=8, seed=5)), GenerationRequest(PROMPTS[1], SamplingSettings(max_tokens=8, seed=11))]
    )[1]
    assert alone.token_ids == batched.token_ids


def test_prompt_logprobs_equal_a_direct_forward_pass(model):
    engine = _engine(model)
    sequence = PROMPTS[2] + [12, 13, 14]
    res = engine.generate([GenerationRequest(sequence, SamplingSettings(max_tokens=1, prompt_logprobs=0)), GenerationRequest(PROMPTS[1], SamplingSettings(max_tokens=3))])[0]
    direct = _sequence_logprobs(model, sequence[:1], sequence[1:])
    assert len(res.prompt_logprobs) == len(sequence)
    assert [row[0] for row in res.prompt_logprobs[:-1]] == pytest.approx(direct, abs=1e-4)
    assert res.prompt_logprobs[-1] == [0.0]
    assert [row[0] for row in res.prompt_logprob_ids[:-1]] == sequence[1:]


def test_top_k_one_is_greedy_and_stop_tokens_end_a_request(model):
    engine = _engine(model)
    greedy = engine.generate([GenerationRequest(PROMPTS[0], SamplingSettings(max_tokens=6, temperature=0.0))])[0]
    topk = engine.generate([GenerationRequest(PROMPTS[0], SamplingSettings(max_tokens=6, temperature=1.0, top_k=1))])[0]
    assert topk.token_ids == greedy.token_ids
    stop_at = greedy.token_ids[1]
    stopped = engine.generate([GenerationRequest(PROMPTS[0], SamplingSettings(max_tokens=6, temperature=0.0, stop_token_ids=(stop_at,)))])[0]
    assert stopped.token_ids == greedy.token_ids[: greedy.token_ids.index(stop_at) + 1]
    assert stopped.finish_reason == "stop"


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    out = process_logits(logits, [SamplingSettings(max_tokens=1, top_p=0.7)], [[]])
    assert torch.isfinite(out[0, :2]).all() and torch.isinf(out[0, 2:]).all()


def test_prompt_seeds_follow_the_prompt_and_its_count_not_the_arrival_order():
    a, b = [5, 9, 11], [7, 8]
    first = PromptSeeds(0)
    in_order = [first.seed_for(p, step=3) for p in (a, a, b)]
    second = PromptSeeds(0)
    reordered = [second.seed_for(p, step=3) for p in (b, a, a)]
    assert in_order == [reordered[1], reordered[2], reordered[0]]
    assert in_order[0] != in_order[1], "a repeated prompt (a group's copies) needs a seed of its own per copy"
    assert all(0 <= s < 2**63 for s in in_order)
    assert PromptSeeds(0).seed_for(a, step=4) != in_order[0], "the step is part of the seed"
    assert PromptSeeds(1).seed_for(a, step=3) != in_order[0], "the base seed is part of the seed"
    assert second.seed_for(a, step=4) == PromptSeeds(0).seed_for(a, step=4), "a new step starts the counts afresh"


def test_deterministic_request_ids_keep_rows_that_share_a_prompt_apart():
    """Two dataset rows (or two samples of a group) with one prompt: with verl's ``det-`` ids each keeps
    its own seed whatever the arrival order; a random id adds nothing (it differs in every run)."""
    prompt = [5, 6, 7]
    rows = ["det-1-10-0-recommender", "det-1-11-0-recommender"]
    in_order = [PromptSeeds(0).seed_for(prompt, 1, rows[0]), PromptSeeds(0).seed_for(prompt, 1, rows[1])]
    seeds = PromptSeeds(0)
    reversed_order = [seeds.seed_for(prompt, 1, rows[1]), seeds.seed_for(prompt, 1, rows[0])][::-1]
    assert in_order == reversed_order and in_order[0] != in_order[1]
    assert PromptSeeds(0).seed_for(prompt, 1, "0f3a9c-random") == PromptSeeds(0).seed_for(prompt, 1), "a random id is ignored"
    assert PromptSeeds(0).seed_for(prompt, 1, rows[0]) != PromptSeeds(0).seed_for(prompt, 1), "a deterministic id counts"
