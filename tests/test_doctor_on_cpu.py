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
                                         ("gpu: vllm", importlib.util.find_spec("vllm") is None)) if missing}
    assert expected <= set(report["problems"]) and report["ok"] is (not report["problems"])
    assert "gpu: flash_attn" not in report["problems"]  # optional: the GPU recipes use sdpa
    assert report["gpu"].startswith(f"torch {torch.__version__}")
    assert json.loads(_doctor("--json").stdout)["ok"] is True  # without --gpu a CPU machine is fine


def test_doctor_marks_rows_not_loaded_when_verl_skips_the_plugin():
    proc = _doctor(env={**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none"})
    assert "[ok     ]" not in proc.stdout
    assert proc.stdout.count("[NOT LOADED]") == 6


def test_doctor_says_whether_the_cpu_path_is_active():
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    assert "CPU path: inactive (VERL_PLATFORM unset)" in _doctor(env=env).stdout
    report = json.loads(_doctor("--json", env={**env, "VERL_PLATFORM": "cpu"}).stdout)
    assert report["cpu_path"]["active"] is True


def test_doctor_checks_a_composed_config_for_components_that_need_each_other():
    bad = _doctor("--config-name", "ppo_trainer", "algorithm.adv_estimator=grpo", "+algorithm.coars.self_distill.mode=rlsd")
    assert bad.returncode == 1
    assert "algorithm.coars.* is read only by algorithm.adv_estimator=coars_grpo" in bad.stdout
    env = {**os.environ, "VERL_PLATFORM": "cpu"}
    good = _doctor("--config-name", "cpu_learning_tiny", env=env)
    assert good.returncode == 0, good.stdout
    assert "cpu_learning_tiny combines them correctly" in good.stdout
    on_cpu = _doctor("--config-name", "cpu_learning_tiny", "ray_kwargs.ray_init.num_cpus=2", env=env)
    assert on_cpu.returncode == 1 and "ray_kwargs.ray_init.num_cpus=16" in on_cpu.stdout
