"""Test-side shortcuts."""

from coars_verl.cpu.launch import TrainingRun, run_main_ppo  # noqa: F401
