"""What running verl's trainer on CPU needs beyond the platform class.

Applied by the plugin only when ``VERL_PLATFORM=cpu`` is set for the process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys

CPU_PROCESS_GROUP_BACKEND = "cpu:gloo"


def apply_cpu_runtime_settings() -> None:
    """Make verl's FSDP workers start on a machine without an accelerator."""
    # verl registers its FSDP engine for cuda/npu only; the engine itself runs on CPU with gloo,
    # and verl reads this variable precisely to override the engine lookup.
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
    _default_process_group_to_gloo()
    _unpinned_fsdp2_cpu_offload()


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

    fsdp_utils.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy
    engine = sys.modules.get("verl.workers.engine.fsdp.transformer_impl")
    if engine is not None:
        engine.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy
