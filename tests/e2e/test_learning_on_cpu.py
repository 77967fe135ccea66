"""Learning you can see: CoARS through main_ppo raises held-out Hit@1 on the learning task.

The end-to-end check that the trainer puts each role's advantage on that role's own tokens with
the right sign: a reward on the wrong role, a flipped sign or credit shifted by a token leaves
the cold start's greedy Hit@1 where it is (or lowers it). About 6 minutes on 2 cores: the
benchmark's ``demo`` preset (cold start, 10 CoARS steps, evaluation before and after).
"""

from coars_verl.bench.learning import PRESETS, run_bench


def test_coars_training_raises_held_out_hit_at_1(tmp_path):
    preset = PRESETS["demo"]
    summary = run_bench(preset, ["coars"], [0], tmp_path / "bench")
    start = summary["start"]
    run = summary["runs"]["coars"][0]
    end = run["curve"][-1]
    assert start["hit_at_1"] <= 0.40, f"the start model is not below the task's ceiling: {start}"
    assert end["step"] == preset.steps
    assert end["hit_at_1"] >= start["hit_at_1"] + 0.20, f"held-out Hit@1 did not rise: {run['curve']}"
    sampled = [row["coars/dialogue/hit_rate"] for row in run["per_step"]]
    assert sum(sampled[-3:]) / 3 > sum(sampled[:3]) / 3, f"the rollouts' hit rate did not rise: {sampled}"
