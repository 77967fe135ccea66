"""The recipes ship in the wheel: a pip-installed user composes them without the checkout."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COMPOSE = """
import coars_verl, sys
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from coars_verl.composition import composition_problems
assert coars_verl.__file__.startswith(sys.argv[1]), coars_verl.__file__
with initialize_config_module(config_module="coars_verl.recipes", version_base=None):
    ours = compose(config_name="cpu_learning_tiny", overrides=["actor_rollout_ref.model.path=/m"])
print("ours", ours.trainer.v1.trainer_mode, ours.coars.dialogue.max_turns, ours.actor_rollout_ref.actor.strategy, composition_problems(ours))
GlobalHydra.instance().clear()
with initialize_config_module(config_module="verl.trainer.config", version_base=None):
    stock = compose(config_name="ppo_trainer", overrides=["hydra.searchpath=[pkg://coars_verl.recipes]", "+base=cpu"])
print("stock+cpu", stock.actor_rollout_ref.rollout.name, stock.ray_kwargs.ray_init.num_cpus, stock.actor_rollout_ref.actor.strategy)
"""


def test_an_installed_wheel_composes_our_recipes_and_puts_verls_config_on_cpu(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    site = tmp_path / "site"
    with zipfile.ZipFile(next((tmp_path / "dist").glob("coars_verl-*.whl"))) as wheel:
        wheel.extractall(site)  # what pip install puts into site-packages
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", COMPOSE, str(site)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ours coars_sync 3 fsdp2 []" in run.stdout
    assert "stock+cpu hf 16 fsdp2" in run.stdout
