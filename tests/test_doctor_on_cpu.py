"""`python -m coars_verl.doctor` in a fresh process, as a user runs it."""

import json
import os
import subprocess
import sys


def _doctor(*args, env=None):
    return subprocess.run([sys.executable, "-m", "coars_verl.doctor", *args], capture_output=True, text=True, timeout=300, env=env)


def test_doctor_lists_every_component_and_exits_zero():
    proc = _doctor()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ok     ] platform" in proc.stdout and "cpu" in proc.stdout
    assert "[ok     ] rollout backend" in proc.stdout and "HFReplica" in proc.stdout
    assert "verl 0.9.1" in proc.stdout


def test_doctor_json_names_the_registered_components():
    report = json.loads(_doctor("--json").stdout)
    found = {(c["kind"], c["name"]) for c in report["components"] if c["found"]}
    assert ("platform", "cpu") in found and ("rollout backend", "hf") in found
    assert report["ok"] is True


def test_doctor_fails_loudly_when_verl_does_not_load_the_plugin():
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none"}
    proc = _doctor(env=env)
    assert proc.returncode == 1
    assert "did not load coars_verl.plugin" in proc.stdout


def test_doctor_gpu_names_what_the_gpu_recipes_lack_with_the_fix():
    report = json.loads(_doctor("--json", "--gpu").stdout)
    import importlib.util

    import torch

    expected = {key for key, missing in (("gpu: cuda", not torch.cuda.is_available()),
                                         ("gpu: vllm", importlib.util.find_spec("vllm") is None),
                                         ("gpu: flash_attn", importlib.util.find_spec("flash_attn") is None)) if missing}
    assert expected <= set(report["problems"]) and report["ok"] is (not report["problems"])
    if "gpu: flash_attn" in expected:
        assert "pip install flash-attn" in report["problems"]["gpu: flash_attn"]
    assert json.loads(_doctor("--json").stdout)["ok"] is True  # without --gpu a CPU machine is fine
