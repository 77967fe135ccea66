"""Which CUDA build the GPU environment's pinned packages are, which NVIDIA driver that needs, and
whether this machine's driver has it (``python -m coars_verl.doctor --gpu``). No torch import.

``.[gpu]`` is ``verl[vllm]==0.9.1``, which pins torch 2.11.0, vLLM 0.24.0 and transformers 5.9.0.
Their default PyPI wheels are CUDA 13 builds (the published requirements: torch 2.11.0's Linux
wheel requires ``cuda-toolkit[...]==13.0.2`` and ``nvidia-*-cu13``, vLLM 0.24.0's
``nvidia-cutlass-dsl[cu13]``), and a CUDA 13 build needs a driver that runs CUDA 13 (>= 580 on
Linux). On a CUDA 12 driver such a torch imports fine and reports ``torch.cuda.is_available()``
False, which reads like "no GPU"; :func:`cuda_build_problem` names the mismatch instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional

MIN_LINUX_DRIVER = {13: "580.65.06", 12: "525.60.13"}
"""The oldest Linux driver that runs a CUDA major version's builds (NVIDIA's CUDA compatibility
table: CUDA 13.x from 580.65.06; CUDA 12.x from 525.60.13 through minor version compatibility)."""

CUDA12_INSTALL = ("on a CUDA 12 driver install the CUDA 12 builds of the same versions: `make env-gpu CUDA=12.8` "
                  "(torch 2.11.0 from PyTorch's cu128 index, and vLLM 0.24.0's CUDA 12 wheel from its GitHub release "
                  "with VLLM_WHEEL=...; docs/gpu.md, 'Which CUDA build'), or upgrade the driver to >= 580")


@dataclass(frozen=True)
class NvidiaDriver:
    """What ``nvidia-smi`` reports: the driver version and the newest CUDA version that driver runs."""

    version: Optional[str]
    cuda: Optional[str]
    error: Optional[str] = None
    """Why nothing could be read (nvidia-smi missing or failing); None when it answered."""


def parse_nvidia_smi(output: str) -> NvidiaDriver:
    """The driver and CUDA versions in ``nvidia-smi``'s banner (``Driver Version: 550.54.15  CUDA Version: 12.4``)."""
    driver = re.search(r"Driver Version:\s*([0-9][0-9.]*)", output)
    cuda = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", output)
    if not driver:
        return NvidiaDriver(None, None, f"nvidia-smi printed no driver version: {output.strip()[:200]!r}")
    return NvidiaDriver(driver.group(1), cuda.group(1) if cuda else None)


def nvidia_driver(timeout_s: float = 30) -> NvidiaDriver:
    """Ask the ``nvidia-smi`` on PATH (the same one ``make env`` asks)."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return NvidiaDriver(None, None, "nvidia-smi is not on PATH (no NVIDIA driver installed, or not visible here)")
    try:
        run = subprocess.run([executable], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return NvidiaDriver(None, None, f"nvidia-smi failed: {type(exc).__name__}: {exc}")
    if run.returncode != 0:
        said = (run.stdout + run.stderr).strip().splitlines()
        return NvidiaDriver(None, None, f"nvidia-smi exited {run.returncode}: {said[0] if said else ''}")
    return parse_nvidia_smi(run.stdout)


def _major(version: Optional[str]) -> Optional[int]:
    match = re.match(r"(\d+)", version or "")
    return int(match.group(1)) if match else None


def describe(torch_version: Optional[str], torch_cuda: Optional[str], driver: NvidiaDriver) -> str:
    """One line: torch's build and the driver, as the doctor prints them."""
    build = f"torch {torch_version or 'not installed'} " + (f"built for CUDA {torch_cuda}" if torch_cuda else "(a CPU build)")
    if driver.error:
        return f"{build}; NVIDIA driver: unknown ({driver.error})"
    return f"{build}; NVIDIA driver {driver.version}" + (f", runs CUDA up to {driver.cuda}" if driver.cuda else "")


def cuda_build_problem(torch_version: Optional[str], torch_cuda: Optional[str], driver: NvidiaDriver,
                       cuda_available: bool) -> Optional[str]:
    """Why torch cannot use the GPU here, naming the build and the driver; None when it can."""
    if cuda_available:
        return None
    if not torch_cuda:
        return (f"torch {torch_version} is a CPU build: install the CUDA build the GPU recipes pin (torch 2.11.0; "
                "`make env-gpu`, docs/gpu.md)")
    if driver.error:
        return f"torch {torch_version} is built for CUDA {torch_cuda}, but no NVIDIA driver answered: {driver.error}"
    needed, runs = _major(torch_cuda), _major(driver.cuda)
    if needed is not None and runs is not None and needed > runs:
        minimum = MIN_LINUX_DRIVER.get(needed, "a newer one")
        return (f"torch {torch_version} is built for CUDA {torch_cuda}, which needs a driver that runs CUDA {needed} "
                f"(Linux >= {minimum}); this machine's driver {driver.version} runs CUDA up to {driver.cuda}, so "
                f"torch.cuda.is_available() is False: {CUDA12_INSTALL if runs == 12 else 'upgrade the driver'}")
    return (f"no CUDA device is visible (torch.cuda.is_available() is False) although torch {torch_version} is built for "
            f"CUDA {torch_cuda} and driver {driver.version} runs CUDA {driver.cuda}: check CUDA_VISIBLE_DEVICES and that "
            "this process can open the GPU (containers: --gpus)")
