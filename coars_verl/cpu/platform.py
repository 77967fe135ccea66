"""verl platform ``cpu``: runs verl's trainer on a machine with no accelerator.

Selected only explicitly, with ``VERL_PLATFORM=cpu`` in the environment of the driver and of
every Ray worker (a recipe does it through ``ray_kwargs.ray_init.runtime_env.env_vars``).
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType
from typing import Any, Optional

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from coars_verl.constants import PLATFORM_NAME
from coars_verl.cpu.device import cpu_device_module

PLATFORM_ENV_VAR = "VERL_PLATFORM"


def cpu_platform_requested() -> bool:
    """True when this process was told to run verl on CPU."""
    return os.environ.get(PLATFORM_ENV_VAR, "").strip().lower() == PLATFORM_NAME


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """No accelerator: gloo for collectives, host memory, one logical device.

    Ray's resource pools always ask for accelerators, so this platform names Ray's ``GPU``
    resource and the recipe starts Ray with logical GPUs (``ray_init.num_gpus``).
    """

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return cpu_device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Auto-detection must never fall onto the CPU path; only VERL_PLATFORM=cpu selects it.
        return False

    def current_device(self) -> str:
        # verl moves tensors with ``.to(get_device_id())``; an int would mean cuda:N.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: Optional[int] = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
