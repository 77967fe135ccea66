"""Which torch build ``make env`` installs, before anything that could pull one in (stdlib only: it runs
before the environment has anything else).

* torch already in the environment: kept, whatever its build (a GPU user's CUDA torch stays).
* a machine with an NVIDIA GPU (``nvidia-smi`` answers), or ``TORCH=cuda``: nothing here; the
  project's dependencies then take the platform's default torch (CUDA on Linux from PyPI), and
  ``make env-gpu`` lets vLLM's pin choose it.
* otherwise, or ``TORCH=cpu``: the CPU build of ``TORCH_VERSION`` from PyTorch's CPU index (where
  a local file of that build is configured for pip, pip takes it); if that fails, plain PyPI's
  build, with a warning (a CUDA build also runs on CPU, it is only larger).

    python coars_verl/torch_choice.py --python .venv/bin/python [--torch auto|cpu|cuda] [--gpu auto|yes|no] [--dry-run]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def installed_torch(python: str) -> str | None:
    """``version (CUDA x|CPU)`` of the torch in ``python``'s environment, or None."""
    probe = "import torch; print(torch.__version__, 'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU')"
    run = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return run.stdout.strip() if run.returncode == 0 else None


def plan(torch: str, gpu: bool, present: str | None, python: str) -> tuple[str, list[list[str]]]:
    """(why, pip commands to try in order until one succeeds); no command: install nothing here."""
    if torch not in ("auto", "cpu", "cuda"):
        raise ValueError(f"TORCH={torch!r}: expected auto, cpu or cuda")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if present and torch == "auto":
        return f"torch {present} is already installed; kept", []
    if torch == "cuda" or (torch == "auto" and gpu):
        return "an NVIDIA GPU" + (" (TORCH=cuda)" if torch == "cuda" else "") + ": the dependencies take the platform's default torch", []
    return ("no GPU" if torch == "auto" else "TORCH=cpu") + f": the CPU build of torch {TORCH_VERSION}", [
        [*pip, f"torch=={TORCH_VERSION}", "--index-url", CPU_INDEX, "--retries", "1", "--timeout", "30"],
        [*pip, f"torch=={TORCH_VERSION}"],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torch_choice", description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the environment's python")
    parser.add_argument("--torch", default="auto", help="auto | cpu | cuda (the Makefile's TORCH)")
    parser.add_argument("--gpu", default="auto", choices=("auto", "yes", "no"), help="whether this machine has an NVIDIA GPU (auto: nvidia-smi)")
    parser.add_argument("--dry-run", action="store_true", help="print the decision and the commands, install nothing")
    args = parser.parse_args(argv)
    gpu = has_nvidia_gpu() if args.gpu == "auto" else args.gpu == "yes"
    try:
        why, commands = plan(args.torch, gpu, installed_torch(args.python), args.python)
    except ValueError as error:
        print(f"torch_choice: {error}", file=sys.stderr)
        return 2
    print(f"torch: {why}")
    for number, command in enumerate(commands):
        print(("  would run: " if args.dry_run else "  running: ") + " ".join(command))
        if args.dry_run:
            continue
        if subprocess.run(command).returncode == 0:
            return 0
        if number + 1 < len(commands):
            print("torch: the CPU index could not be used; falling back to PyPI's default build (may be a CUDA build: larger, "
                  "runs on CPU too)", file=sys.stderr)
    return 1 if commands and not args.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
