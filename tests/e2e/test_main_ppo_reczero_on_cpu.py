"""End to end: the RecZero-style baseline recipe trains through verl's main_ppo on CPU for 2 steps.

The learning task's samples turned into single-turn rows by data_prep/reczero.py, its cold-start
model (which knows the item format, not the tags), plain GRPO with our reward function. Fails if
the recipe does not train, if verl scores with anything but the RecZero reward, or if the rows
are not played as single turns.
"""

import json

import pytest

from coars_verl.datasets.reczero import write_reczero
from coars_verl.rewards.reczero import compute_score
from helpers import run_main_ppo


@pytest.fixture(scope="module")
def reczero_run(tmp_path_factory, learning_task_start):
    data, model = learning_task_start
    work = tmp_path_factory.mktemp("reczero")
    written = write_reczero(data, work / "rows")
    assert written["train.parquet"] > 0
    run = run_main_ppo(
        "cpu_reczero_tiny",
        [f"actor_rollout_ref.model.path={model}", f"data.train_files={work / 'rows' / 'train.parquet'}",
         f"data.val_files={work / 'rows' / 'valid.parquet'}", "data.max_prompt_length=1024",
         "actor_rollout_ref.actor.optim.lr=2e-4", f"trainer.rollout_data_dir={work / 'rollouts'}"],
        work,
    )
    assert run.returncode == 0, run.log_tail()
    return run, work


def test_two_grpo_steps_train_the_model(reczero_run):
    run, _ = reczero_run
    assert [m["step"] for m in run.metrics] == [1, 2]
    updated = [step for step in run.metrics if step["critic/advantages/max"] > 0]
    assert updated, "no group had reward variance: the cold start should hit some targets when sampling"
    assert all(step["actor/grad_norm"] > 0 for step in updated)


def candidates_in(prompt_text: str) -> list[str]:
    block = prompt_text.split("Candidates:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split(". ", 1)[1] for line in block.splitlines()]


def test_every_answer_is_scored_by_the_reczero_reward_on_the_reczero_prompt(reczero_run):
    _, work = reczero_run
    rows = [json.loads(line) for path in sorted((work / "rollouts").glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert len(rows) == 2 * 4 * 4  # 2 steps x 4 prompts x 4 answers, one turn each
    for row in rows:
        assert "<analyze user>" in row["input"] and row["input"].count("assistant\n") == 1  # one turn, RecZero's prompt
        expected = compute_score("reczero/learning", row["output"], row["gts"], {"candidate_titles": candidates_in(row["input"])})
        assert row["score"] == pytest.approx(expected["score"]), row
    # the cold start writes "Reason: ...\nItem: ...", not the tags: hits score 0.9, the rest -0.1
    assert {round(row["score"], 4) for row in rows} <= {0.9, -0.1} and any(row["score"] > 0 for row in rows)
