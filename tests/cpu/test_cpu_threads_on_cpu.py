"""Threads of torch's CPU kernels on the CPU path (coars_verl.cpu.activate): Ray starts its workers
with OMP_NUM_THREADS=1, so verl's FSDP worker computed on one core; with the CPU platform asked for,
a worker uses every core it may run on, or COARS_CPU_THREADS."""

import os

import pytest
import ray

from coars_verl.cpu import activate


def test_threads_default_to_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv(activate.CPU_THREADS_ENV, raising=False)
    assert activate.cpu_threads() == len(os.sched_getaffinity(0))


def test_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv(activate.CPU_THREADS_ENV, "3")
    assert activate.cpu_threads() == 3


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_thread_count_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(activate.CPU_THREADS_ENV, value)
    with pytest.raises(ValueError, match=f"{activate.CPU_THREADS_ENV}='{value}'.*whole number"):
        activate.cpu_threads()


@ray.remote
def torch_threads_in_a_ray_worker() -> tuple[int, str | None]:
    import torch
    import verl  # noqa: F401  (loads the plugin, as in verl's own workers)

    return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)  # our own instance, never the user's
    yield
    ray.shutdown()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to tell one thread from all")
def test_a_ray_worker_on_the_cpu_platform_uses_every_core(local_ray):
    cores = len(os.sched_getaffinity(0))
    without = ray.get(torch_threads_in_a_ray_worker.options(runtime_env={"env_vars": {"VERL_PLATFORM": ""}}).remote())
    assert without == (1, "1"), "Ray's own setting, which the CPU path overrides"
    on_cpu = ray.get(torch_threads_in_a_ray_worker.options(runtime_env={"env_vars": {"VERL_PLATFORM": "cpu"}}).remote())
    assert on_cpu[0] == cores
    chosen = ray.get(torch_threads_in_a_ray_worker.options(
        runtime_env={"env_vars": {"VERL_PLATFORM": "cpu", activate.CPU_THREADS_ENV: "1"}}).remote())
    assert chosen[0] == 1
