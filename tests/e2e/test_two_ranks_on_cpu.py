"""Two data-parallel ranks on CPU (``trainer.n_gpus_per_node=2``: verl's process groups over gloo,
FSDP2's collectives over gloo in torch 2.13): the CoARS recipe with the teacher pass, LoRA off and
on, 2 steps each.

On the same rollouts (the CPU recipes seed each request from its deterministic id, whichever of the
two rollout replicas serves it; ``data.seed`` fixed; the same initial weights), the first step over
two ranks equals one rank: the same rewards and per-role advantages (groups by
(prompt, role) across the ranks' shards), and the same teacher scores (the records are split
between the ranks and read back in order; the one-rank teacher pass is checked against a direct
transformers forward in tests/verl/test_teacher_pass_on_cpu.py). A record read back from the wrong
rank, or a group split by rank, changes the delta or advantage statistics.

What 2 ranks need on CPU that 1 rank does not: ``ppo_micro_batch_size_per_gpu`` must divide each
rank's share of a mini-batch (verl counts ``ppo_mini_batch_size`` x ``rollout.n`` samples, not
both roles' samples: 4 x 2 / 2 ranks = 4), so it is 4 here in both runs.
"""

import pytest

from helpers import run_main_ppo

SAME_ROLLOUTS = ["data.seed=0", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4"]
TWO_RANKS = ["trainer.n_gpus_per_node=2", "ray_kwargs.ray_init.num_gpus=2"]
LORA = ["actor_rollout_ref.model.lora_rank=8", "actor_rollout_ref.model.lora_alpha=16", "actor_rollout_ref.model.lora.merge=True"]
SAME_AT_STEP_1 = [
    "coars/rec/reward_mean", "coars/user/reward_mean", "coars/rec/samples", "coars/user/samples",
    "coars/rec/advantage_abs_mean", "coars/user/advantage_abs_mean", "coars/dialogue/hit_rate",
    "coars/sd/context_share", "coars/sd/scored_share", "coars/sd/teacher_tokens",
    "coars/sd/recommender/tokens", "coars/sd/user/tokens",
    "coars/sd/recommender/delta_mean", "coars/sd/recommender/delta_std", "coars/sd/user/delta_mean", "coars/sd/user/delta_std",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, primed_model_path, movielens_dir):
    work = tmp_path_factory.mktemp("ranks")
    common = [f"actor_rollout_ref.model.path={primed_model_path}", f"data.train_files={movielens_dir / 'train.parquet'}",
              f"data.val_files={movielens_dir / 'valid.parquet'}", *SAME_ROLLOUTS]
    out = {}
    for name, extra in (("one", []), ("two", TWO_RANKS), ("two_lora", TWO_RANKS + LORA)):
        run = run_main_ppo("cpu_coars_tiny", common + extra, work / name)
        assert run.returncode == 0, run.log_tail()
        out[name] = {m["step"]: m for m in run.metrics}
    return out


def test_two_ranks_train_both_roles_with_the_teacher_pass(runs):
    for name in ("two", "two_lora"):
        assert sorted(runs[name]) == [1, 2], name
        for step in runs[name].values():
            assert step["coars/rec/samples"] == step["coars/user/samples"] == 8
            assert step["coars/sd/scored_share"] > 0 and step["coars/sd/teacher_tokens"] > 0
            assert step["coars/dialogue/role_advantage_gap_mean"] > 0 and step["actor/grad_norm"] > 0
    for step in runs["two"].values():  # the rollout serves the weights both ranks trained (full weights: exact)
        assert step["training/rollout_probs_diff_max"] < 1e-4
    for step in runs["two_lora"].values():  # verl sends merged LoRA weights in bfloat16
        assert step["training/rollout_probs_diff_max"] < 2e-2


def test_the_first_step_over_two_ranks_equals_one_rank(runs):
    one, two = runs["one"][1], runs["two"][1]
    assert one["coars/sd/scored_share"] > 0 and one["coars/sd/recommender/delta_std"] > 0
    for name in SAME_AT_STEP_1:
        assert two[name] == pytest.approx(one[name], abs=1e-5), name
