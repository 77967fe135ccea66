"""The recipes' ``${oc.env:...}`` values are the launching shell's, also on a Ray cluster started beforehand.

verl resolves the config inside the Ray actor that runs the trainer (``TaskRunner.run``:
``OmegaConf.resolve(config)``), and on a ``ray start`` cluster that actor has the raylet's
environment. Here a local cluster of our own is started without ``COARS_DATA_DIR``, a driver with
``COARS_DATA_DIR`` set composes ``coars_lastfm`` and calls the ``validate_config`` that main_ppo calls
(the plugin's check), then hands the config to an actor that resolves it as verl's task runner does.
Before the fix the actor read ``data/lastfm_afl/train.parquet`` (the default), not the launching path.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

DRIVER = r"""
import json, os, sys
import ray
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from coars_verl.recipes import RECIPES_DIR
from verl.trainer.main_ppo import need_critic, need_reference_policy, validate_config  # the binding main() calls

with initialize_config_dir(config_dir=str(RECIPES_DIR), version_base=None):
    # hf: verl's validation of a vLLM rollout imports vllm, which this CPU machine lacks
    config = compose(config_name="coars_lastfm", overrides=["actor_rollout_ref.rollout.name=hf"])
validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))

@ray.remote(num_cpus=0)
class TaskRunner:  # what verl's TaskRunner.run does with the config first
    def run(self, config):
        OmegaConf.resolve(config)
        return {"train_files": config.data.train_files, "model": config.actor_rollout_ref.model.path,
                "actor_env": os.environ.get("COARS_DATA_DIR")}

ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
try:
    print("REPORT " + json.dumps(ray.get(TaskRunner.remote().run.remote(config), timeout=240)))
finally:
    ray.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_ray_cluster():
    """A Ray head of our own (``ray start --block`` in a new process group, its own port and temp dir),
    started without the COARS_* variables; stopped by stopping that process group only."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = _free_port()
    # no token: Ray keeps it in ~/.ray/auth_token, shared with every other Ray run of this user
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COARS_") and k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled"}
    ray = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray), "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp}", "--num-cpus=1",
                             "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", "--node-ip-address=127.0.0.1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, "ray start exited"
            time.sleep(1)
        else:
            pytest.fail("our Ray head did not open its port in 180 s")
        yield f"127.0.0.1:{port}"
    finally:
        from coars_verl.cpu.launch import stop_process_group

        stop_process_group(head.pid)  # the head and the processes it started; no other Ray instance
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def test_the_trainer_reads_the_data_dir_of_the_launching_shell_not_of_the_cluster(own_ray_cluster, tmp_path):
    launch_dir = tmp_path / "data-set-where-launched"
    env = {**os.environ, "RAY_ADDRESS": own_ray_cluster, "RAY_AUTH_MODE": "disabled", "COARS_DATA_DIR": str(launch_dir), "COARS_MODEL_PATH": "/models/launched"}
    run = subprocess.run([sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=420, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("REPORT ")).split(" ", 1)[1])
    assert report["actor_env"] is None  # the cluster does not have the launching shell's variable
    assert report["train_files"] == f"{launch_dir}/lastfm_afl/train.parquet", report
    assert report["model"] == "/models/launched", report


def test_only_values_that_read_the_environment_are_resolved(monkeypatch):
    from omegaconf import OmegaConf

    from coars_verl.launch_env import resolve_launch_environment

    monkeypatch.setenv("COARS_DATA_DIR", "/launched")
    config = OmegaConf.create({"data": {"train_files": "${oc.env:COARS_DATA_DIR,data}/${name}/train.parquet", "files": ["${oc.env:COARS_DATA_DIR}/a"]},
                               "name": "lastfm", "run": "coars_${name}", "plain": 1})
    assert resolve_launch_environment(config) == ["data.train_files", "data.files[0]"]
    monkeypatch.delenv("COARS_DATA_DIR")
    assert config.data.train_files == "/launched/lastfm/train.parquet" and config.data.files[0] == "/launched/a"
    assert OmegaConf.is_interpolation(config, "run")  # left to verl, which resolves it to the same value
