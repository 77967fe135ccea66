"""Test-side shortcuts."""

from pathlib import Path
from typing import Sequence

import pandas as pd

from coars_verl.cpu.launch import TrainingRun, run_main_ppo  # noqa: F401

TITLES = ["Toy Story", "Heat", "Fargo", "Casino", "Babe", "Se7en", "Clueless", "Jumanji"]


def write_title_prompts(path: Path, n: int, numbered: bool = False) -> None:
    """``n`` single-turn rows of verl's RL dataset format: pick one of :data:`TITLES` (the target
    cycles). ``numbered``: each row's request carries its number, so no two rows share a prompt."""
    rows = [
        {
            "data_source": "coars/synthetic",
            "prompt": [
                {"role": "system", "content": "You recommend movies. Answer with 'Item: <title>'."},
                {"role": "user", "content": f"Candidates: {', '.join(TITLES)}. Recommend one" + (f" (request {i})." if numbered else ".")},
            ],
            "ability": "recommendation",
            "reward_model": {"style": "rule", "ground_truth": TITLES[i % len(TITLES)]},
            "extra_info": {"index": i, "split": path.stem},
        }
        for i in range(n)
    ]
    pd.DataFrame(rows).to_parquet(path)


def run_on_title_prompts(work: Path, model: Path, train_rows: int, overrides: Sequence[str] = (), numbered: bool = False) -> TrainingRun:
    """``cpu_grpo_tiny`` through main_ppo on ``train_rows`` title prompts (4 for validation) written
    to ``work``; the run must succeed."""
    write_title_prompts(work / "train.parquet", train_rows, numbered)
    write_title_prompts(work / "val.parquet", 4, numbered)
    data = [f"actor_rollout_ref.model.path={model}", f"data.train_files={work / 'train.parquet'}", f"data.val_files={work / 'val.parquet'}"]
    run = run_main_ppo("cpu_grpo_tiny", [*data, *overrides], work)
    assert run.returncode == 0, run.log_tail()
    return run

SINGLE_TURN_TWO_OVERRIDES = ["algorithm.adv_estimator=coars_grpo", "trainer.v1.trainer_mode=coars_sync"]
"""What turns on self-distilled credit for a single-turn verl task (the README's block 3 starts with these)."""
