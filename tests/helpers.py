"""Test-side shortcuts."""

from coars_verl.cpu.launch import TrainingRun, run_main_ppo, stop_ray  # noqa: F401
