"""What running verl's trainer on CPU needs beyond the platform class.

Applied by the plugin only when ``VERL_PLATFORM=cpu`` is set for the process.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys

CPU_PROCESS_GROUP_BACKEND = "cpu:gloo"
CPU_THREADS_ENV = "COARS_CPU_THREADS"


def apply_cpu_runtime_settings() -> None:
    """Make verl's FSDP workers start on a machine without an accelerator."""
    # verl registers its FSDP engine for cuda/npu only; the engine itself runs on CPU with gloo,
    # and verl reads this variable precisely to override the engine lookup.
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
    _default_process_group_to_gloo()
    _unpinned_fsdp2_cpu_offload()
    _blockwise_log_probs()
    _causal_attention_for_right_padding()
    _short_replay_buffer_poll()
    _torch_threads_on_every_core()


def cpu_threads() -> int:
    """Threads for torch's CPU kernels in this process: ``COARS_CPU_THREADS`` when set, else the
    cores this process may run on."""
    value = os.environ.get(CPU_THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{CPU_THREADS_ENV}={value!r}: expected a whole number of threads >= 1")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _torch_threads_on_every_core() -> None:
    """Ray sets ``OMP_NUM_THREADS=1`` in every worker that asks for no CPUs, and verl's workers ask
    for none, so the FSDP worker's old-log-prob, teacher and update passes ran on one core (seen at
    100 % CPU at most on 2 cores). The phases of a CPU step run one after another (the rollout server
    waits while the worker computes, and the other way round), so each may use every core: a forward
    of 8 rows of 1000 tokens on the tiny model took 0.16 s on one thread and 0.08 s on two.
    """
    import torch

    torch.set_num_threads(cpu_threads())


def _default_process_group_to_gloo() -> None:
    """verl builds ``cpu:gloo,{device}:{ccl}``, which is ``cpu:gloo,cpu:gloo`` here and torch
    rejects the duplicate device type; default the backend to plain ``cpu:gloo`` instead.

    Must run before ``verl.workers.engine_workers`` binds the function, i.e. at plugin import.
    """
    import verl.utils.distributed as distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_coars_cpu_default", False):
        return

    @functools.wraps(original)
    def initialize_with_cpu_backend(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or CPU_PROCESS_GROUP_BACKEND)

    initialize_with_cpu_backend._coars_cpu_default = True
    distributed.initialize_global_process_group_ray = initialize_with_cpu_backend
    workers = sys.modules.get("verl.workers.engine_workers")
    if workers is not None:  # imported before the plugin (only in unusual set-ups): patch its binding too
        workers.initialize_global_process_group_ray = initialize_with_cpu_backend


def _unpinned_fsdp2_cpu_offload() -> None:
    """verl's FSDP2 engine always offloads the reference model with ``CPUOffloadPolicy(pin_memory=True)``;
    pinning host memory needs an accelerator ("Cannot access accelerator device"). On CPU the
    parameters live in host memory anyway, so keep the copy unpinned.

    Must run before ``verl.workers.engine.fsdp.transformer_impl`` binds the name, i.e. at plugin import.
    """
    import verl.utils.fsdp_utils as fsdp_utils

    original = getattr(fsdp_utils, "CPUOffloadPolicy", None)
    if original is None or getattr(original, "coars_unpinned", False):
        return

    @dataclasses.dataclass
    class UnpinnedCPUOffloadPolicy(original):
        coars_unpinned = True  # a class marker, not a dataclass field

        def __post_init__(self):
            self.pin_memory = False

    _replace_where_the_engine_binds_it(fsdp_utils, "CPUOffloadPolicy", UnpinnedCPUOffloadPolicy)


def _replace_where_the_engine_binds_it(module, name: str, replacement) -> None:
    """Set ``module.name``; verl's FSDP engine imports the name into its own module, so set its
    binding too when it is imported already (later imports bind the replacement)."""
    setattr(module, name, replacement)
    engine = sys.modules.get("verl.workers.engine.fsdp.transformer_impl")
    if engine is not None:
        setattr(engine, name, replacement)


LOG_PROB_BLOCK_ROWS = 1024
"""Token positions per logsumexp call: bounds the temporary to 1024 x vocab floats (200 MB at a 49k vocabulary)."""


def _blockwise_log_probs() -> None:
    """verl's log-prob of the labels without flash-attn (``logprobs_from_logits_v2``) calls
    ``torch.logsumexp`` once per row of its input, and its callers pass the tokens flattened, so a
    10k-token micro-batch makes 10k calls: on CPU about a third of every log-prob and update pass
    (measured on the tiny model). The same sum in blocks of :data:`LOG_PROB_BLOCK_ROWS` positions:
    equal values and gradients, bounded memory. bfloat16 keeps verl's own path (its stability note).

    verl's ``logprobs_from_logits`` looks the function up in its module at each call, so replacing
    the module attribute is enough, whenever it happens.
    """
    import torch
    import verl.utils.torch_functional as torch_functional

    original = torch_functional.logprobs_from_logits_v2
    if getattr(original, "_coars_blockwise", False):
        return

    @functools.wraps(original)
    def blockwise_logprobs(logits, labels):
        if logits.dtype not in (torch.float32, torch.float64):
            return original(logits, labels)
        picked = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
        rows = logits.reshape(-1, logits.shape[-1])
        if rows.shape[0] == 0:
            return picked
        logsumexp = torch.cat([torch.logsumexp(block, dim=-1) for block in rows.split(LOG_PROB_BLOCK_ROWS)])
        return picked - logsumexp.view(picked.shape)

    blockwise_logprobs._coars_blockwise = True
    torch_functional.logprobs_from_logits_v2 = blockwise_logprobs


def _causal_attention_for_right_padding() -> None:
    """verl's engine without remove-padding (the CPU recipes' setting: packing needs flash-attn)
    pads each micro-batch on the right and passes the padding mask to the model. With a mask that
    has zeros, torch's SDPA on CPU takes its math kernel (an L x L score matrix per head); with an
    all-ones mask transformers calls SDPA with ``is_causal`` and no mask, and torch's fused kernel
    runs: a forward of 8 rows of 450-700 tokens on the tiny model took 0.061 s with verl's mask and
    0.035 s with all ones. With padding only on the right, causal attention gives every real
    position the same inputs (it sees only earlier positions, all real); only the padding positions'
    outputs change, and verl drops them (it narrows the logits to each row's length before
    log-probs, entropy and loss). Not None: without a mask transformers reads the padding's
    position ids (reset to 0) as packed sequences and builds a block mask, the slow path again.

    Replaces verl's mask builder for its no-remove-padding path. Must run before
    ``verl.workers.engine.fsdp.transformer_impl`` binds the name, i.e. at plugin import; a module
    imported earlier is patched too.
    """
    import torch
    import verl.workers.utils.padding as padding

    original = padding.build_attention_mask_from_nested
    if getattr(original, "_coars_causal_only", False):
        return

    @functools.wraps(original)
    def all_ones_for_right_padding(input_ids, max_seq_len=None):
        assert input_ids.is_nested, "input_ids must be a nested tensor"  # verl's own check: padding is added on the right
        if max_seq_len is None:
            max_seq_len = int(input_ids.offsets().diff().max().item())
        return torch.ones((input_ids.size(0), max_seq_len), dtype=torch.int32, device=input_ids.values().device)

    all_ones_for_right_padding._coars_causal_only = True
    _replace_where_the_engine_binds_it(padding, "build_attention_mask_from_nested", all_ones_for_right_padding)


REPLAY_POLL_INTERVAL_S = 0.05
"""How often verl's replay buffer looks for a finished batch on CPU (verl's default: every 2 s)."""


def _short_replay_buffer_poll() -> None:
    """verl's v1 trainers take each batch from a ``ReplayBuffer`` that sleeps ``poll_interval``
    between looks at TransferQueue; the trainers build it without one, so the default of 2 s holds
    and every generation phase (training and validation) lasts a whole multiple of 2 s. A CPU step
    of the tiny model generates in about a second and then sleeps for the rest. Default the interval
    to :data:`REPLAY_POLL_INTERVAL_S` instead (a look is one metadata read: cheap at CPU batch
    sizes); a buffer built with an explicit interval keeps it.
    """
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    original = ReplayBuffer.__init__
    if getattr(original, "_coars_short_poll", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def init_with_short_poll(self, *args, **kwargs):
        if "poll_interval" not in signature.bind_partial(self, *args, **kwargs).arguments:
            kwargs["poll_interval"] = REPLAY_POLL_INTERVAL_S
        original(self, *args, **kwargs)

    init_with_short_poll._coars_short_poll = True
    ReplayBuffer.__init__ = init_with_short_poll
