"""Test-side shortcuts."""

from coars_verl.cpu.launch import TrainingRun, run_main_ppo  # noqa: F401

SINGLE_TURN_TWO_OVERRIDES = ["algorithm.adv_estimator=coars_grpo", "trainer.v1.trainer_mode=coars_sync"]
"""What turns on self-distilled credit for a single-turn verl task (the README's block 3 starts with these)."""
