"""The ``hf`` rollout backend: a transformers model served to verl's agent loops on CPU.

Three pieces, mirroring verl's vLLM backend:

* :class:`HFRolloutServer` - a Ray actor with the token-in/token-out interface verl's
  ``LLMServerClient`` calls (``generate``, ``wake_up``/``sleep``, ``abort_*``, ...). Concurrent
  requests are queued and decoded together in batches by :class:`HFGenerationEngine`.
* :class:`HFReplica` - starts one server per replica (trainer side, ``RolloutReplicaRegistry``).
* :class:`HFServerAdapter` - lives in the hybrid actor worker and pushes the trainer's weights
  to the server after every step (``verl.workers.rollout.base`` registry).

The served weights use ``actor_rollout_ref.rollout.dtype`` (use float32 on CPU). Backend options
come from ``actor_rollout_ref.rollout.engine_kwargs.hf``: ``max_batch_size`` (64),
``batch_wait_ms`` (5), ``num_threads`` (``COARS_CPU_THREADS``, else all cores), ``seed_from_prompt`` (false: sampled
requests without a seed of their own draw from one generator seeded with ``rollout.seed``, so
what a request samples depends on arrival order; true, the CPU recipes' setting: each gets a seed
from its prompt, step and deterministic request id, see :class:`PromptSeeds`, and two runs of one
job sample the same rollouts while the weights are the same; with ``rollout.full_determinism``,
also on however many replicas).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import replace
from typing import Any, Optional

import ray
import torch
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

from coars_verl.constants import ROLLOUT_BACKEND_NAME
from coars_verl.cpu.activate import cpu_threads
from coars_verl.cpu.hf_engine import GenerationRequest, GenerationResult, HFGenerationEngine, PromptSeeds, SamplingSettings

logger = logging.getLogger(__name__)

SERVER_NAME_PREFIX = f"{ROLLOUT_BACKEND_NAME}_server"
_UNSUPPORTED_SAMPLING = {"min_p": 0.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
_IGNORED_SAMPLING = {"n", "detokenize", "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output"}


def server_actor_name(replica_rank: int, node_rank: int) -> str:
    return f"{SERVER_NAME_PREFIX}_{replica_rank}_{node_rank}"


def _engine_options(config: RolloutConfig) -> dict[str, Any]:
    return dict((config.engine_kwargs or {}).get(ROLLOUT_BACKEND_NAME, None) or {})


def sampling_settings_from_request(sampling_params: dict[str, Any], default_max_tokens: int) -> SamplingSettings:
    """Translate verl's vLLM-style ``sampling_params`` dict; unknown options are an error."""
    params = dict(sampling_params)
    max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", default_max_tokens))
    for name, neutral in _UNSUPPORTED_SAMPLING.items():
        value = params.pop(name, neutral)
        if value != neutral:
            raise ValueError(f"hf rollout: sampling option {name}={value!r} is not supported (only {neutral!r})")
    for name in _IGNORED_SAMPLING:
        params.pop(name, None)
    logprobs = params.pop("logprobs", None)
    prompt_logprobs = params.pop("prompt_logprobs", None)
    settings = SamplingSettings(
        max_tokens=int(max_tokens),
        temperature=float(params.pop("temperature", 1.0)),
        top_k=int(params.pop("top_k", -1) or -1),
        top_p=float(params.pop("top_p", 1.0)),
        repetition_penalty=float(params.pop("repetition_penalty", 1.0)),
        ignore_eos=bool(params.pop("ignore_eos", False)),
        stop_token_ids=tuple(int(t) for t in (params.pop("stop_token_ids", None) or ())),
        want_logprobs=logprobs is not None and logprobs is not False,
        prompt_logprobs=None if prompt_logprobs is None else int(prompt_logprobs),
        seed=params.pop("seed", None),
    )
    if params:
        raise ValueError(f"hf rollout: unknown sampling option(s) {sorted(params)}")
    return settings


class HFRolloutServer:
    """Serves one transformers model to verl's agent loops; one instance per replica."""

    def __init__(
        self,
        config: RolloutConfig,
        model_config: HFModelConfig,
        rollout_mode=None,
        workers: Optional[list] = None,
        replica_rank: int = 0,
        node_rank: int = 0,
        gpus_per_node: int = 1,
        nnodes: int = 1,
        cuda_visible_devices: str = "",
        **kwargs,
    ):
        self.config: RolloutConfig = omega_conf_to_dataclass(config)
        self.model_config: HFModelConfig = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        self.options = _engine_options(self.config)
        self.max_batch_size = int(self.options.get("max_batch_size", 64))
        self.batch_wait_s = float(self.options.get("batch_wait_ms", 5)) / 1000.0
        # with deterministic request ids (rollout.full_determinism) the id tells requests apart on every
        # replica, so the seed does not depend on which replica serves a request (1 or 2 ranks sample alike);
        # without them, the replica rank keeps identical prompts on two replicas from drawing the same tokens
        base_seed = self.config.seed if getattr(self.config, "full_determinism", False) else self.config.seed + replica_rank
        self.prompt_seeds = PromptSeeds(base_seed) if bool(self.options.get("seed_from_prompt", False)) else None
        self.global_steps: Optional[int] = None
        self.engine: Optional[HFGenerationEngine] = None
        self._queue: Optional[asyncio.Queue] = None
        self._batch_task: Optional[asyncio.Task] = None
        self._model_lock: Optional[asyncio.Lock] = None
        self._paused = False
        self._in_flight = 0
        self.stats = {"batches": 0, "requests": 0, "generated_tokens": 0, "weight_updates": 0}

    # -- lifecycle ---------------------------------------------------------------
    async def launch_server(self, **kwargs) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        torch.set_num_threads(int(self.options.get("num_threads", cpu_threads())))
        path = self.model_config.local_path
        dtype = getattr(torch, str(self.config.dtype))
        model = AutoModelForCausalLM.from_pretrained(
            path, torch_dtype=dtype, attn_implementation="sdpa", trust_remote_code=self.model_config.trust_remote_code
        )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.model_config.trust_remote_code)
        eos = _eos_token_ids(path, tokenizer, GenerationConfig)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        self.engine = HFGenerationEngine(model, eos_token_ids=eos, pad_token_id=pad, seed=self.config.seed + self.replica_rank)
        self._queue = asyncio.Queue()
        self._model_lock = asyncio.Lock()
        self._batch_task = asyncio.create_task(self._serve_batches())
        logger.info("hf rollout server %d ready: %s (%s, eos=%s)", self.replica_rank, path, dtype, eos)

    def get_master_address(self):
        return None, None, None

    def get_server_address(self):
        # Token-in/token-out only, through the Ray handle; there is no HTTP endpoint.
        return ray.util.get_node_ip_address(), 0

    # -- generation --------------------------------------------------------------
    def _max_model_len(self) -> int:
        return int(self.config.max_model_len or (self.config.prompt_length + self.config.response_length))

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        audio_data: Optional[list[Any]] = None,
        mm_processor_kwargs: Optional[dict[str, Any]] = None,
        priority: int = 0,
        **kwargs,
    ) -> TokenOutput:
        if image_data or video_data or audio_data:
            raise ValueError("hf rollout: multi-modal inputs are not supported")
        prompt_ids = [int(t) for t in prompt_ids]
        headroom = self._max_model_len() - len(prompt_ids)
        if headroom < 1:
            raise ValueError(
                f"hf rollout: prompt length {len(prompt_ids)} leaves no room within max_model_len "
                f"{self._max_model_len()} (set actor_rollout_ref.rollout.max_model_len)"
            )
        default_max = min(self.config.response_length, self.config.prompt_length + self.config.response_length - len(prompt_ids))
        settings = sampling_settings_from_request(sampling_params, default_max)
        settings = replace(settings, max_tokens=max(1, min(settings.max_tokens, headroom)))
        extra_fields: dict[str, Any] = {"global_steps": self.global_steps, "num_cached_tokens": 0}
        if self._paused:
            return TokenOutput(token_ids=[], log_probs=None, stop_reason="aborted", extra_fields=extra_fields)
        if self.prompt_seeds is not None and settings.seed is None and not settings.greedy:
            settings = replace(settings, seed=self.prompt_seeds.seed_for(prompt_ids, self.global_steps, request_id))

        future = asyncio.get_running_loop().create_future()
        self._in_flight += 1
        try:
            await self._queue.put((GenerationRequest(prompt_ids, settings), future))
            result: GenerationResult = await future
        finally:
            self._in_flight -= 1
        if result.finish_reason == "aborted":
            return TokenOutput(token_ids=[], log_probs=None, stop_reason="aborted", extra_fields=extra_fields)
        if result.prompt_logprobs is not None:
            extra_fields["prompt_logprobs"] = result.prompt_logprobs
            extra_fields["prompt_ids"] = result.prompt_logprob_ids
        return TokenOutput(
            token_ids=result.token_ids,
            log_probs=result.log_probs,
            stop_reason="completed",
            num_preempted=0,
            extra_fields=extra_fields,
        )

    async def _serve_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(self.batch_wait_s)
            while len(batch) < self.max_batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if self._paused:
                _abort(batch)
                continue
            async with self._model_lock:
                try:
                    results = await asyncio.to_thread(self.engine.generate, [req for req, _ in batch])
                except Exception as exc:  # the requests fail, the server keeps serving
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
            self.stats["batches"] += 1
            self.stats["requests"] += len(batch)
            self.stats["generated_tokens"] += sum(len(r.token_ids) for r in results)
            for (_, fut), res in zip(batch, results):
                if not fut.done():
                    fut.set_result(res)

    # -- weights -----------------------------------------------------------------
    async def update_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: Optional[int] = None) -> dict:
        """Load the trainer's full (HF-named) weights; an unknown name is an error, not a skip."""
        async with self._model_lock:
            model = self.engine.model
            own = model.state_dict()
            unknown = sorted(set(named_tensors) - set(own))
            if unknown:
                raise KeyError(f"hf rollout: weights not in the served model: {unknown[:5]} (of {len(unknown)})")
            with torch.no_grad():
                for name, tensor in named_tensors.items():
                    own[name].copy_(tensor.to(own[name].dtype))
            self.stats["weight_updates"] += 1
        if global_steps is not None:
            self.global_steps = global_steps
        return {"updated": len(named_tensors)}

    async def get_state_checksum(self) -> float:
        """Sum of all parameters; lets tests see that a weight sync reached the server."""
        return float(sum(p.double().sum() for p in self.engine.model.parameters()))

    async def get_stats(self) -> dict:
        return dict(self.stats)

    # -- the rest of verl's server interface -----------------------------------------
    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    async def wake_up(self, tags: Optional[list[str]] = None):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None  # the KV cache lives only for the duration of one batch

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def wait_for_requests_to_drain(self):
        while self._in_flight:
            await asyncio.sleep(0.01)

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict[str, Any]:
        self._paused = True
        pending = []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        _abort(pending)
        return {"aborted_count": len(pending), "request_ids": []}

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True) -> dict[str, Any]:
        return {"aborted": False, "request_id": request_id, "error": "hf rollout does not track single requests"}

    async def resume_generation(self):
        self._paused = False

    async def resume_engine_generation(self):
        self._paused = False

    async def open_submission_gate(self):
        self._paused = False

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


def _abort(batch) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_result(GenerationResult(token_ids=[], log_probs=None, finish_reason="aborted"))


def _eos_token_ids(path: str, tokenizer, generation_config_cls) -> list[int]:
    ids: list[int] = []
    try:
        eos = generation_config_cls.from_pretrained(path).eos_token_id
        ids = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    except OSError:
        pass
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError(f"hf rollout: the model at {path} declares no end-of-sequence token")
    return ids


class HFReplica(RolloutReplica):
    """One ``hf`` server per replica, placed on the node of its first worker."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.server_class = ray.remote(HFRolloutServer)

    async def launch_servers(self):
        node_ids = await asyncio.gather(
            *[w.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()) for w in self.workers]
        )
        for node_rank in range(self.nnodes):
            name = server_actor_name(self.replica_rank, node_rank) + self.name_suffix
            server = self.server_class.options(
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    node_id=node_ids[node_rank * self.gpus_per_replica_node], soft=False
                ),
                name=name,
                max_concurrency=self.max_concurrency,
            ).remote(
                config=self.config,
                model_config=self.model_config,
                rollout_mode=self.rollout_mode,
                replica_rank=self.replica_rank,
                node_rank=node_rank,
            )
            self.servers.append(server)
        await asyncio.gather(*[s.launch_server.remote() for s in self.servers])
        address, port = await self.servers[0].get_server_address.remote()
        self._server_handle = self.servers[0]
        self._server_address = f"{address}:{port}"


class HFServerAdapter(BaseRollout):
    """Hybrid-worker side of the ``hf`` backend: forwards sleep/wake and pushes weights."""

    def __init__(self, config: RolloutConfig, model_config: HFModelConfig, device_mesh=None, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        local_world_size = int(os.environ.get("RAY_LOCAL_WORLD_SIZE", 1))
        rollout_world_size = (
            self.config.tensor_model_parallel_size * self.config.data_parallel_size * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // rollout_world_size if replica_rank == -1 else replica_rank
        self.rollout_rank = rank % rollout_world_size
        self.node_rank = self.rollout_rank // local_world_size
        self._server = None

    def _server_handle(self):
        if self.rollout_rank != 0:
            return None
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank, self.node_rank))
        return self._server

    async def resume(self, tags: list[str]):
        server = self._server_handle()
        if server is not None:
            await server.wake_up.remote(tags=tags)

    async def release(self):
        server = self._server_handle()
        if server is not None:
            await server.sleep.remote()

    @torch.no_grad()
    async def update_weights(self, weights, global_steps: int = None, wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise ValueError(f"hf rollout: weight wire format {wire_format!r} is not supported (only named_tensors)")
        if kwargs.get("peft_config") is not None:
            raise ValueError(
                "hf rollout: LoRA adapter sync is not supported; set actor_rollout_ref.model.lora.merge=True "
                "so the trainer sends merged weights"
            )
        start = time.perf_counter()
        # Every rank drains the generator: producing full tensors is a collective over FSDP ranks.
        state = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in weights}
        server = self._server_handle()
        if server is not None:
            await server.update_weights.remote(state, global_steps=global_steps)
            logger.info("hf rollout: synced %d tensors in %.2fs", len(state), time.perf_counter() - start)
