"""A ``torch.cuda``-shaped device module for machines without an accelerator.

verl calls ``get_torch_device().<fn>()`` for memory bookkeeping, RNG state and streams. On CPU
those calls have nothing to act on, so they return neutral values instead of raising. Anything
not defined here falls through to ``torch.cpu`` (streams, events, synchronize).
"""

from __future__ import annotations

import sys
import types

import psutil
import torch


class _CpuDeviceModule(types.ModuleType):
    def __getattr__(self, name: str):
        return getattr(torch.cpu, name)

    # -- device selection -------------------------------------------------
    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def current_device() -> str:
        # verl moves tensors with ``.to(current_device())``; an int would mean cuda:N.
        return "cpu"

    @staticmethod
    def set_device(device=None) -> None:
        return None

    @staticmethod
    def get_device_name(device=None) -> str:
        return "cpu"

    @staticmethod
    def synchronize(device=None) -> None:
        return None

    # -- memory: report host memory so verl's logs stay meaningful -----------
    @staticmethod
    def empty_cache() -> None:
        return None

    @staticmethod
    def ipc_collect() -> None:
        return None

    @staticmethod
    def mem_get_info(device=None) -> tuple[int, int]:
        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)

    @staticmethod
    def memory_allocated(device=None) -> int:
        return int(psutil.Process().memory_info().rss)

    memory_reserved = memory_allocated
    max_memory_allocated = memory_allocated
    max_memory_reserved = memory_allocated

    @staticmethod
    def reset_peak_memory_stats(device=None) -> None:
        return None

    @staticmethod
    def set_per_process_memory_fraction(fraction, device=None) -> None:
        return None

    # -- RNG: the CPU generator is the device generator -------------------
    @staticmethod
    def get_rng_state(device=None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state, device=None) -> None:
        torch.set_rng_state(state)

    @staticmethod
    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed


cpu_device_module = _CpuDeviceModule("coars_verl.cpu.device_module")
sys.modules.setdefault(cpu_device_module.__name__, cpu_device_module)
