"""The hf rollout server as verl drives it: Ray actor, token-in/token-out, weight sync."""

import asyncio

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from verl.workers.config import HFModelConfig, RolloutConfig

from coars_verl.cpu.hf_rollout import HFRolloutServer, HFServerAdapter, sampling_settings_from_request, server_actor_name


@pytest.fixture(scope="module")
def ray_cluster():
    # address="local": a Ray of our own, never a cluster the user runs on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, runtime_env={"env_vars": {"VERL_PLATFORM": "cpu"}})
    yield
    ray.shutdown()


def _rollout_config(**kw) -> RolloutConfig:
    return RolloutConfig(name="hf", dtype="float32", prompt_length=256, response_length=32, tensor_model_parallel_size=1, **kw)


@pytest.fixture(scope="module")
def server(ray_cluster, tiny_model_path):
    actor = ray.remote(HFRolloutServer).options(name=server_actor_name(0, 0), max_concurrency=64).remote(
        config=_rollout_config(), model_config=HFModelConfig(path=str(tiny_model_path)), replica_rank=0
    )
    ray.get(actor.launch_server.remote())
    yield actor
    ray.kill(actor)


def _prompt(tiny_model_path, text="Recommend one movie."):
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False)


GREEDY = {"temperature": 0.0, "max_tokens": 12, "logprobs": True}


def test_greedy_generation_matches_transformers(server, tiny_model_path):
    prompt = _prompt(tiny_model_path)
    out = ray.get(server.generate.remote(prompt_ids=prompt, sampling_params=dict(GREEDY), request_id="r0"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, torch_dtype=torch.float32).eval()
    ref = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    cut = next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))
    assert out.token_ids == ref[:cut]
    assert len(out.log_probs) == len(out.token_ids)
    assert out.stop_reason == "completed"


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, tiny_model_path):
    prompts = [_prompt(tiny_model_path, f"Recommend movie number {i}.") for i in range(6)]
    before = ray.get(server.get_stats.remote())
    outs = ray.get([server.generate.remote(prompt_ids=p, sampling_params=dict(GREEDY), request_id=f"c{i}") for i, p in enumerate(prompts)])
    alone = [ray.get(server.generate.remote(prompt_ids=p, sampling_params=dict(GREEDY), request_id="solo")) for p in prompts[:2]]
    after = ray.get(server.get_stats.remote())
    assert after["requests"] - before["requests"] == 8
    assert after["batches"] - before["batches"] < 8, "concurrent requests should share batches"
    assert [o.token_ids for o in outs[:2]] == [a.token_ids for a in alone]


def test_prompt_logprobs_are_returned_in_vllm_layout(server, tiny_model_path):
    prompt = _prompt(tiny_model_path)
    out = ray.get(server.generate.remote(prompt_ids=prompt, sampling_params={"max_tokens": 1, "prompt_logprobs": 0, "temperature": 1.0}, request_id="t"))
    lps = out.extra_fields["prompt_logprobs"]
    assert len(lps) == len(prompt) and lps[-1] == [0.0]
    assert [row[0] for row in out.extra_fields["prompt_ids"][:-1]] == prompt[1:]


def test_weight_sync_through_the_adapter_changes_generations(server, tiny_model_path, monkeypatch):
    prompt = _prompt(tiny_model_path)
    before = ray.get(server.generate.remote(prompt_ids=prompt, sampling_params=dict(GREEDY), request_id="w0"))
    checksum_before = ray.get(server.get_state_checksum.remote())

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, torch_dtype=torch.float32)
    torch.manual_seed(1)
    trained = {name: p + 0.5 * torch.randn_like(p) for name, p in model.state_dict().items()}
    monkeypatch.setenv("RANK", "0")
    adapter = HFServerAdapter(config=_rollout_config(), model_config=HFModelConfig(path=str(tiny_model_path)))
    asyncio.run(adapter.update_weights(iter(trained.items()), global_steps=7))

    after = ray.get(server.generate.remote(prompt_ids=prompt, sampling_params=dict(GREEDY), request_id="w1"))
    assert ray.get(server.get_state_checksum.remote()) != pytest.approx(checksum_before)
    assert after.token_ids != before.token_ids
    assert after.extra_fields["global_steps"] == 7

    # the served model now equals the pushed weights: same greedy tokens as transformers with them
    model.load_state_dict(trained)
    ref = model.eval().generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
    assert after.token_ids == ref[: len(after.token_ids)]


def test_unknown_weights_are_rejected_not_skipped(server):
    with pytest.raises(ray.exceptions.RayTaskError, match="not in the served model"):
        ray.get(server.update_weights.remote({"not.a.param": torch.zeros(1)}))


def test_sampling_options_translate_and_unsupported_ones_fail_loudly():
    s = sampling_settings_from_request({"temperature": 0.5, "top_p": 0.9, "top_k": 5, "logprobs": True, "max_tokens": 9}, 32)
    assert (s.temperature, s.top_p, s.top_k, s.want_logprobs, s.max_tokens) == (0.5, 0.9, 5, True, 9)
    assert sampling_settings_from_request({"logprobs": False}, 32).want_logprobs is False
    with pytest.raises(ValueError, match="min_p"):
        sampling_settings_from_request({"min_p": 0.1}, 32)
    with pytest.raises(ValueError, match="bogus"):
        sampling_settings_from_request({"bogus": 1}, 32)


def _sample_in_order(tiny_model_path, requests: list[tuple[str, list[int]]], seed_from_prompt: bool) -> dict[str, list[tuple[int, ...]]]:
    """A fresh server (no Ray), the requests sent concurrently in the given order: each key's answers, sorted."""

    async def go():
        config = _rollout_config(engine_kwargs={"hf": {"seed_from_prompt": seed_from_prompt, "batch_wait_ms": 20}})
        server = HFRolloutServer(config=config, model_config=HFModelConfig(path=str(tiny_model_path)), replica_rank=0)
        await server.launch_server()
        await server.set_global_steps(7)
        sampled = {"temperature": 1.0, "max_tokens": 10}
        outs = await asyncio.gather(*[server.generate(prompt_ids=p, sampling_params=dict(sampled), request_id=f"{key}{i}") for i, (key, p) in enumerate(requests)])
        answers: dict[str, list[tuple[int, ...]]] = {}
        for (key, _), out in zip(requests, outs):
            answers.setdefault(key, []).append(tuple(out.token_ids))
        return {key: sorted(v) for key, v in answers.items()}

    return asyncio.run(go())


def test_seed_from_prompt_samples_the_same_rollouts_whatever_the_arrival_order(tiny_model_path):
    a, b = _prompt(tiny_model_path, "Recommend one movie."), _prompt(tiny_model_path, "Recommend one song.")
    group = [("a", a)] * 4 + [("b", b)] * 2
    interleaved = [("b", b), ("a", a), ("a", a), ("b", b), ("a", a), ("a", a)]
    first = _sample_in_order(tiny_model_path, group, seed_from_prompt=True)
    second = _sample_in_order(tiny_model_path, interleaved, seed_from_prompt=True)
    assert first == second
    assert len(set(first["a"])) > 1, "the copies of one prompt must not all share one seed"
    shared_generator = _sample_in_order(tiny_model_path, interleaved, seed_from_prompt=False)
    assert shared_generator != second, "without the option the shared generator decides (else this test shows nothing)"
