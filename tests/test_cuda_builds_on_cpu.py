"""`python -m coars_verl.doctor --gpu` names torch's CUDA build and the NVIDIA driver, and the mismatch
between them, instead of "no CUDA device is visible". The driver is a fake `nvidia-smi` on PATH.

torch 2.11.0 from PyPI (what `.[gpu]` pins) is a CUDA 13 build; on a CUDA 12 driver it imports and
reports no device. The old doctor said only "no CUDA device is visible", which points away from the cause."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from coars_verl.cuda_builds import NvidiaDriver, cuda_build_problem, describe, nvidia_driver, parse_nvidia_smi

BANNER = """Mon Dec  7 19:40:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI {driver}              Driver Version: {driver}      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |
+-----------------------------------------------------------------------------------------+"""
CUDA12_DRIVER = {"driver": "550.54.15", "cuda": "12.4"}
CUDA13_DRIVER = {"driver": "580.82.07", "cuda": "13.0"}


def _fake_nvidia_smi(folder: Path, body: str) -> Path:
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return folder


def _printing(folder: Path, **versions) -> Path:
    # shell builtins only: the tests put nothing else on PATH
    return _fake_nvidia_smi(folder, "\n".join(f"echo '{line}'" for line in BANNER.format(**versions).splitlines()))


def test_the_driver_and_its_cuda_version_are_read_from_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(_printing(tmp_path, **CUDA12_DRIVER)))
    assert nvidia_driver() == NvidiaDriver("550.54.15", "12.4")
    _fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9")
    failed = nvidia_driver()
    assert failed.version is None and "exited 9" in failed.error and "could not communicate" in failed.error
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "not on PATH" in nvidia_driver().error
    assert parse_nvidia_smi("garbage").error.startswith("nvidia-smi printed no driver version")


def test_a_cuda_13_torch_on_a_cuda_12_driver_is_named_with_the_fix():
    problem = cuda_build_problem("2.11.0", "13.0", NvidiaDriver("550.54.15", "12.4"), cuda_available=False)
    assert "built for CUDA 13.0" in problem and "driver 550.54.15 runs CUDA up to 12.4" in problem
    assert ">= 580.65.06" in problem and "make env-gpu CUDA=12.8" in problem and "no CUDA device" not in problem


def test_the_other_causes_keep_their_own_message():
    assert cuda_build_problem("2.11.0", "13.0", NvidiaDriver("580.82.07", "13.0"), cuda_available=True) is None
    matched = cuda_build_problem("2.11.0", "13.0", NvidiaDriver("580.82.07", "13.0"), cuda_available=False)
    assert "CUDA_VISIBLE_DEVICES" in matched and "needs a driver" not in matched
    assert "needs a driver" not in cuda_build_problem("2.11.0+cu128", "12.8", NvidiaDriver("580.82.07", "13.0"), cuda_available=False)
    assert "is a CPU build" in cuda_build_problem("2.13.0+cpu", None, NvidiaDriver("550.54.15", "12.4"), cuda_available=False)
    assert "no NVIDIA driver answered" in cuda_build_problem("2.11.0", "13.0", NvidiaDriver(None, None, "nvidia-smi is not on PATH"), False)
    assert describe("2.11.0", "13.0", NvidiaDriver("550.54.15", "12.4")) == \
        "torch 2.11.0 built for CUDA 13.0; NVIDIA driver 550.54.15, runs CUDA up to 12.4"


# the real doctor in a fresh process, with torch reporting the CUDA 13 build that `.[gpu]` installs from PyPI
AS_CUDA13_TORCH = "import sys, torch; torch.version.cuda = '13.0'; from coars_verl.doctor import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("driver, expected", [(CUDA12_DRIVER, "needs a driver that runs CUDA 13"), (CUDA13_DRIVER, "CUDA_VISIBLE_DEVICES")])
def test_doctor_gpu_prints_the_build_and_the_driver_and_names_the_mismatch(tmp_path, driver, expected):
    env = {**os.environ, "PATH": f"{_printing(tmp_path, **driver)}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run([sys.executable, "-c", AS_CUDA13_TORCH, "--gpu"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1, run.stdout + run.stderr  # this CPU machine has no usable GPU either way
    assert f"built for CUDA 13.0; NVIDIA driver {driver['driver']}, runs CUDA up to {driver['cuda']}" in run.stdout
    assert "ERROR (gpu: cuda)" in run.stdout and expected in run.stdout
