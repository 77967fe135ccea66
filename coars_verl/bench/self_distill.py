"""Benchmark: the cost of self-distillation on the CPU recipe.

    python -m coars_verl.bench.self_distill [--steps 6] [--repeats 2] [--learning-policy] [--artifacts artifacts]

Runs ``cpu_coars_tiny`` with the same model, data and seed: self-distillation off and on (rlsd,
the recipe default), ``--repeats`` times each, and once on with batches where most groups tie
(``coars.reward.mode=outcome``: both roles get Hit@1, so a group ties unless one of its dialogues
hits, which the primed model rarely does; rlsd's credit cannot change in a tied group, which the
trainer must see and skip). Prints, and writes to ``ARTIFACTS/bench/self_distill.json``: mean
seconds per step (each run's first step, with warm-up, left out) and the ratio to off;
teacher-pass tokens against the old-log-prob pass's tokens; the per-token cost of the teacher pass
against the old-log-prob pass's; the share of samples scored by the teacher and why the rest were
skipped; each phase of the step; and the share of a step spent in our own code. Targets (issue
11): step time ratio <= 1.10, per-token cost ratio <= 1.1, the tied case skips its tied groups
(``skipped``).

The runs see the same rollouts: the policy is held fixed (``actor.optim.lr=0``: the update still
runs in full, it just moves nothing) and each sampled request takes its seed from its prompt and
step (the hf backend's ``seed_from_prompt``), so rlsd's step does off's work plus the teacher
pass. ``rollouts_match`` is the share of steps whose total tokens and mean score equal off's.
Even so, separate runs of the same work differ by 5-25 % in step time on a shared 2-core machine
(generation, old-log-prob and update phases alike), more than the cost measured. So the runs
alternate: round ``r`` runs off then rlsd when ``r`` is even and rlsd then off when odd (with two
rounds: off, rlsd, tied, rlsd, off), a drift of the machine's speed over the bench weighs on both
modes alike, and the step ratio pools every timed step of each mode. ``noise`` gives the spread of
the off runs among themselves: a step ratio is no more precise than that. ``same_run_step_ratio``
divides rlsd's step by the same steps without their teacher pass, both timed in the same run;
``teacher_only_step_ratio`` is off's step plus the teacher pass alone. ``--learning-policy`` lets
the policy learn (lr as in the recipe, shared sampling generator): the runs then diverge after the
first update.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from coars_verl.cpu.launch import run_main_ppo
from coars_verl.demo import build_model, prepare_movielens


# the policy held fixed and sampling seeded by prompt: every run samples the same rollouts
SAME_ROLLOUTS = ["actor_rollout_ref.actor.optim.lr=0", "++actor_rollout_ref.rollout.engine_kwargs.hf.seed_from_prompt=true"]


def timed(metrics: list[dict]) -> list[dict]:
    """A run's timed steps: all but the first (compilation, warm-up), unless it is the only one."""
    return metrics[1:] if len(metrics) > 1 else metrics


def mean_step(steps: list[dict]) -> float:
    return statistics.fmean(m["timing_s/step"] for m in steps)


def run_order(repeats: int) -> list[tuple[str, int]]:
    """``(run, round)`` in launch order: each round runs off and rlsd, in that order in an even round
    and the other way round in an odd one, so that a drift of the machine's speed during the bench
    weighs on both modes alike; the tied run once, after the first round."""
    order = []
    for number in range(repeats):
        order += [(name, number) for name in (("off", "rlsd") if number % 2 == 0 else ("rlsd", "off"))]
        if number == 0:
            order.append(("rlsd_tied", 0))
    return order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.bench.self_distill", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--model", choices=("primed", "tiny", "smollm2"), default="primed")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each mode, off and rlsd alternating in order (default 2)")
    parser.add_argument("--learning-policy", action="store_true", help="let the policy learn (the runs then sample different rollouts)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    artifacts = args.artifacts.resolve()
    model = build_model(args.model, artifacts / "models")
    data = prepare_movielens(artifacts / "data" / "movielens-100k")
    common = [
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'valid.parquet'}",
        f"trainer.total_training_steps={args.steps}",
        f"data.train_max_samples={4 * args.steps}",
        "data.seed=0",  # verl draws the train_max_samples subset at random unless seeded: the same samples in every run
    ]
    if not args.learning_policy:
        common += SAME_ROLLOUTS
    modes = {"off": ["algorithm.coars.self_distill.mode=off"], "rlsd": ["algorithm.coars.self_distill.mode=rlsd"],
             "rlsd_tied": ["algorithm.coars.self_distill.mode=rlsd", "coars.reward.mode=outcome"]}
    runs = []
    for name, number in run_order(args.repeats):
        run = run_main_ppo("cpu_coars_tiny", common + modes[name], artifacts / "bench" / f"self_distill_{name}_{number}")
        if run.returncode != 0:
            print(run.log_tail(3000), file=sys.stderr)
            return run.returncode
        runs.append((name, number, run.metrics))
    report = {"steps": args.steps, "model": args.model, "repeats": args.repeats, "policy": "learning" if args.learning_policy else "fixed",
              **bench_report(runs)}
    out = artifacts / "bench" / "self_distill.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"self-distillation cost, cpu_coars_tiny, {args.steps} steps per run, model {args.model}, {report['policy']} policy, "
          f"{args.repeats} run(s) of off and rlsd")
    print_report(report)
    print(f"report: {out}")
    return 0


def bench_report(runs: list[tuple[str, int, list[dict]]]) -> dict:
    """The report of the runs ``(name, round, metrics)`` in launch order: each mode's timed steps
    pooled over its runs, against off's; the rounds one by one; the off runs' spread."""
    steps = {name: [m for n, _, metrics in runs if n == name for m in timed(metrics)] for name in ("off", "rlsd", "rlsd_tied")}
    report = {"order": [f"{name}_{number}" for name, number, _ in runs], "step_s_off": round(mean_step(steps["off"]), 3)}
    for name in ("rlsd", "rlsd_tied"):
        report[name] = summarise(steps[name], report["step_s_off"])
        # this ratio assumes rlsd's step is off's plus its teacher pass; the step ratio measures it
        report[name]["teacher_only_step_ratio"] = round((report["step_s_off"] + report[name]["teacher_pass_s"]) / report["step_s_off"], 3)
    first_off = next(metrics for name, _, metrics in runs if name == "off")
    report["rlsd"]["rollouts_match"] = min(rollouts_match(first_off, metrics) for name, _, metrics in runs if name == "rlsd")
    off_runs = [round(mean_step(timed(metrics)), 3) for name, _, metrics in runs if name == "off"]
    report["noise"] = {"off_runs_step_s": off_runs, "off_spread": round(max(off_runs) / min(off_runs), 3)}
    report["rounds"] = rounds(runs)
    report["phases_s"] = {name: phases(mode_steps) for name, mode_steps in steps.items()}
    report["own_code"] = {name: own_code(mode_steps) for name, mode_steps in steps.items()}
    return report


def rounds(runs: list[tuple[str, int, list[dict]]]) -> list[dict]:
    """Each round's order, off and rlsd step times and their ratios (every round runs both)."""
    out = []
    for number in sorted({number for _, number, _ in runs}):
        mine = {name: timed(metrics) for name, n, metrics in runs if n == number}
        one = summarise(mine["rlsd"], mean_step(mine["off"]))
        out.append({"order": [name for name, n, _ in runs if n == number], "step_s_off": round(mean_step(mine["off"]), 3),
                    "step_s_rlsd": one["step_s"], "step_time_ratio": one["step_time_ratio"], "same_run_step_ratio": one["same_run_step_ratio"]})
    return out


ROLLOUT_FINGERPRINT = ("global_seqlen/mean", "critic/score/mean")


def rollouts_match(one: list[dict], other: list[dict]) -> float:
    """Share of steps at which two runs' rollouts have equal total tokens and mean score (to float32
    rounding: the runs sum the same scores in different orders)."""
    same = [all(k in a and k in b and math.isclose(a[k], b[k], rel_tol=1e-6, abs_tol=1e-6) for k in ROLLOUT_FINGERPRINT)
            for a, b in zip(one, other)]
    return round(sum(same) / len(same), 3) if same else 0.0


def print_report(report: dict) -> None:
    print(f"  off: {report['step_s_off']:.2f} s per step; off runs {report['noise']['off_runs_step_s']} "
          f"(spread {report['noise']['off_spread']:.3f}: no step ratio is more precise than that)")
    for name, label in (("rlsd", "rlsd"), ("rlsd_tied", "rlsd, most groups tied")):
        r = report[name]
        print(f"  {label}: {r['step_s']:.2f} s per step, ratio to off {r['step_time_ratio']:.3f} (target <= 1.10)")
        if "rollouts_match" in r:
            print(f"    steps whose rollouts equal off's: {r['rollouts_match']:.0%}")
        print(f"    samples scored by the teacher {r['scored_share']:.0%} (skipped: {r['skipped']}); with a context {r['context_share']:.0%}")
        print(f"    teacher tokens / old-log-prob tokens {r['token_ratio']:.3f}; teacher pass {r['teacher_pass_s']:.2f} s against "
              f"{r['old_log_prob_pass_s']:.2f} s; per-token cost ratio {r['per_token_cost_ratio']} (target <= 1.1)")
        print(f"    teacher pass split (s per step): {r['teacher_split_s']}")
        print(f"    its step against the same steps without the teacher pass (same run): ratio {r['same_run_step_ratio']:.3f}")
        print(f"    off's step plus this teacher pass alone: ratio {r['teacher_only_step_ratio']:.3f}")
    for one in report["rounds"]:
        print(f"  round {', '.join(one['order'])}: off {one['step_s_off']:.2f} s, rlsd {one['step_s_rlsd']:.2f} s, "
              f"ratio {one['step_time_ratio']:.3f} (same run {one['same_run_step_ratio']:.3f})")
    for name, parts in report["phases_s"].items():
        print(f"  phases, {name} (s per step): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    for name, parts in report["own_code"].items():
        print(f"  own code, {name}: dialogue core {parts['coars_dialogue_core']:.3f} s + reward {parts['coars_reward']:.4f} s + "
              f"advantage step {parts['coars_advantage']:.3f} s per step = {parts['share_of_step']:.1%} of the step")


def summarise(steps: list[dict], step_s_off: float) -> dict:
    """Step time, token and per-token cost ratios, and the scored share over the timed ``steps`` of
    a self-distillation mode, against off's mean step ``step_s_off``."""
    step_s = mean_step(steps)
    teacher_tokens = sum(m["coars/sd/teacher_tokens"] for m in steps)
    student_tokens = sum(m["coars/sd/student_tokens"] for m in steps)
    teacher_s = sum(m["timing_s/coars_teacher"] for m in steps)
    old_lp_s = sum(m["timing_s/old_log_prob"] for m in steps)
    per_token = (teacher_s / teacher_tokens) / (old_lp_s / student_tokens) if teacher_tokens else None
    teacher_pass_s = teacher_s / len(steps)
    skipped_keys = sorted({k for m in steps for k in m if k.startswith("coars/sd/skipped/")})
    return {
        "step_s": round(step_s, 3),
        "step_time_ratio": round(step_s / step_s_off, 3),
        "same_run_step_ratio": round(step_s / (step_s - teacher_pass_s), 3),
        "scored_share": round(statistics.fmean(m["coars/sd/scored_share"] for m in steps), 3),
        "skipped": {k.rsplit("/", 1)[1]: round(statistics.fmean(m.get(k, 0.0) for m in steps), 3) for k in skipped_keys},
        "context_share": round(statistics.fmean(m["coars/sd/context_share"] for m in steps), 3),
        "teacher_tokens": int(teacher_tokens),
        "old_log_prob_tokens": int(student_tokens),
        "token_ratio": round(teacher_tokens / student_tokens, 3),
        "teacher_pass_s": round(teacher_pass_s, 3),
        "old_log_prob_pass_s": round(old_lp_s / len(steps), 3),
        "per_token_cost_ratio": round(per_token, 3) if per_token is not None else None,
        # where the teacher pass's time goes: building prompts, building the records, the worker call
        "teacher_split_s": {part: round(statistics.fmean(m.get(f"timing_s/coars_teacher_{part}", 0.0) for m in steps), 3)
                            for part in ("prompts", "records", "forward")},
    }


PHASES = ("gen", "old_log_prob", "coars_teacher", "update_actor")


def phases(steps: list[dict]) -> dict:
    """Mean seconds per timed step of each phase and the rest of the step."""
    parts = {name: statistics.fmean(m.get(f"timing_s/{name}", 0.0) for m in steps) for name in PHASES}
    return {**{k: round(v, 3) for k, v in parts.items()}, "rest": round(mean_step(steps) - sum(parts.values()), 3)}


def own_code(steps: list[dict]) -> dict:
    parts = {name: statistics.fmean(m.get(f"timing_s/{name}", 0.0) for m in steps) for name in ("coars_dialogue_core", "coars_reward", "coars_advantage")}
    return {**{k: round(v, 4) for k, v in parts.items()}, "share_of_step": round(sum(parts.values()) / mean_step(steps), 4)}


if __name__ == "__main__":
    sys.exit(main())
