"""`make env`'s choice of torch build: CPU build without a GPU, the platform's build with one, an installed torch kept.

Both cases run here (the machine's own case runs for real in every fresh `make test`); nothing is installed.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from coars_verl import torch_choice

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "coars_verl" / "torch_choice.py"


def _executable(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_without_a_gpu_the_cpu_build_is_tried_first_then_pypi():
    why, commands = torch_choice.plan("auto", gpu=False, present=None, python="py")
    assert why.startswith("no GPU") and len(commands) == 2
    assert commands[0][-7:] == ["torch==2.13.0", "--index-url", torch_choice.CPU_INDEX, "--retries", "1", "--timeout", "30"]
    assert "--index-url" not in commands[1] and "torch==2.13.0" in commands[1]


def test_with_a_gpu_or_an_installed_torch_nothing_is_forced():
    assert torch_choice.plan("auto", gpu=True, present=None, python="py")[1] == []
    assert torch_choice.plan("auto", gpu=False, present="2.9.1 CUDA 12.8", python="py") == ("torch 2.9.1 CUDA 12.8 is already installed; kept", [])
    assert torch_choice.plan("cuda", gpu=False, present=None, python="py")[1] == []
    assert torch_choice.CPU_INDEX in torch_choice.plan("cpu", gpu=True, present=None, python="py")[1][0]
    with pytest.raises(ValueError, match="expected auto, cpu or cuda"):
        torch_choice.plan("rocm", gpu=False, present=None, python="py")


def test_gpu_detection_asks_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert torch_choice.has_nvidia_gpu() is False
    _executable(tmp_path / "nvidia-smi", "echo 'GPU 0: NVIDIA H200'; exit 0")
    assert torch_choice.has_nvidia_gpu() is True
    _executable(tmp_path / "nvidia-smi", "echo 'NVIDIA-SMI has failed'; exit 9")  # a driver without a device
    assert torch_choice.has_nvidia_gpu() is False


@pytest.mark.parametrize("gpu, expected", [("no", "would run:"), ("yes", "the dependencies take the platform's default torch")])
def test_the_script_dry_run_for_a_fresh_environment(tmp_path, gpu, expected):
    no_torch = _executable(tmp_path / "python", "exit 1")  # an environment without torch
    run = subprocess.run([sys.executable, str(SCRIPT), "--python", str(no_torch), "--gpu", gpu, "--dry-run"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert expected in run.stdout
    assert ("download.pytorch.org/whl/cpu" in run.stdout) is (gpu == "no")


def test_the_makefile_runs_the_choice_first_and_no_cpu_only_assertion():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    run = subprocess.run(["make", "-n", "-B", "env", "TORCH=cuda", "VENV=/nonexistent/venv"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    choice = next(i for i, line in enumerate(lines) if "torch_choice.py" in line)
    assert "--torch cuda" in lines[choice]
    assert choice < next(i for i, line in enumerate(lines) if '-e ".[test]"' in line)
    assert "assert not torch.version.cuda" not in run.stdout


def _make_n(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "-n", "-B", *args, "VENV=/nonexistent/venv"], cwd=ROOT, capture_output=True, text=True, env=env)


def test_make_env_gpu_takes_the_cuda_12_builds_when_asked():
    """PyPI's torch 2.11.0 and vLLM 0.24.0 are CUDA 13 builds; CUDA=12.8 adds PyTorch's cu128 index and needs vLLM's CUDA 12 wheel."""
    default = _make_n("env-gpu")
    assert default.returncode == 0, default.stderr
    install = next(line for line in default.stdout.splitlines() if '-e ".[gpu,test]"' in line)
    assert "--extra-index-url" not in install and "flash-attn" not in default.stdout
    cuda12 = _make_n("env-gpu", "CUDA=12.8", "VLLM_WHEEL=/w/vllm-0.24.0+cu128-cp38-abi3-manylinux_2_31_x86_64.whl")
    install = next(line for line in cuda12.stdout.splitlines() if '-e ".[gpu,test]"' in line)
    assert "--extra-index-url https://download.pytorch.org/whl/cu128" in install and '"/w/vllm-0.24.0+cu128' in install
    without_vllm = _make_n("env-gpu", "CUDA=12.8")
    assert without_vllm.returncode != 0 and "needs VLLM_WHEEL" in without_vllm.stderr
