"""End to end: self-distilled credit for a plain single-turn verl task (no dialogue), with two overrides.

verl's own single-turn agent loop and reward function; ``coars_grpo`` + ``coars_sync`` treat every
sample as one role and give it token credit from the best-scored other answer to the same prompt.
"""

import json

import pytest

from helpers import SINGLE_TURN_TWO_OVERRIDES as TWO_OVERRIDES
from helpers import run_on_title_prompts
from coars_verl.constants import REC_REWARD_KEY

# memory keyed by the data's extra_info.split: every sample shares the key "train", so step 2 remembers step 1;
# lambda decays over the whole 2-step run (0.5, 0.25), so the teacher acts at both steps (the default, half
# the run, is one step here: lambda 0 at step 2 and no teacher pass)
SELF_DISTILL = ["+algorithm.coars.self_distill.mode=rlsd", "+algorithm.coars.self_distill.sources=[sibling,memory]",
                "+algorithm.coars.self_distill.memory_key=split", "+algorithm.coars.self_distill.lambda_decay_fraction=1.0"]


@pytest.fixture(scope="module")
def single_turn_run(tmp_path_factory, tiny_model_path):
    work = tmp_path_factory.mktemp("single_turn_sd")
    # the same rollouts in every run: sampling seeded by prompt, and no two rows share a prompt (rows with
    # one prompt would swap samples by arrival order). From the shared generator, a step whose groups
    # all tied, so that the teacher scored nothing, came up now and then.
    run = run_on_title_prompts(work, tiny_model_path, 16, ["actor_rollout_ref.rollout.n=4", *TWO_OVERRIDES, *SELF_DISTILL,
                                                           "++actor_rollout_ref.rollout.engine_kwargs.hf.seed_from_prompt=true",
                                                           f"trainer.rollout_data_dir={work / 'rollouts'}"], numbered=True)
    return run, work


def test_samples_get_token_credit_from_a_better_sibling(single_turn_run):
    run, _ = single_turn_run
    assert [m["step"] for m in run.metrics] == [1, 2]
    for step in run.metrics:
        # only a sample whose group holds a strictly better answer has a sibling; the best never does
        assert step["coars/sd/context_share/sibling"] < 1, step
        assert step["coars/sd/single/context_share"] == step["coars/sd/context_share"]
        assert step["coars/sd/single/tokens"] > 0 and step["coars/sd/single/delta_std"] > 0
        samples = step["coars/single/samples"]  # every sample is the one role
        assert samples == round(step["coars/sd/context_share"] * samples) + step["coars/sd/no_context_samples"]
        if step["critic/advantages/max"] > 0:  # rlsd scales the outcome advantage: a step whose groups all tie has no gradient
            assert step["actor/grad_norm"] > 0, step
        assert step["coars/sd/prompt_render_mismatch"] == 0
    assert any(step["coars/sd/context_share/sibling"] > 0 for step in run.metrics)
    assert any(step["actor/grad_norm"] > 0 for step in run.metrics)
    first, second = run.metrics
    assert first["coars/sd/context_share/memory"] == 0  # nothing earlier to remember
    # step 1's answers are memory for every sample the teacher scores (tied groups are not scored: their credit cannot change)
    assert second["coars/sd/context_share/memory"] > 0 and second["coars/sd/context_share"] == second["coars/sd/scored_share"]


def test_each_sample_keeps_verls_reward_and_one_role(single_turn_run):
    _, work = single_turn_run
    rows = [json.loads(line) for path in sorted((work / "rollouts").glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert rows and {row["role"] for row in rows} == {"single"}
    assert all(REC_REWARD_KEY not in row for row in rows)
    for row in rows:  # the score trained on is the reward function's (a partial-credit value in [0, 1])
        assert 0.0 <= row["score"] <= 1.0
