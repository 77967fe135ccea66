"""Benchmark: the cost of self-distillation on the CPU recipe.

    python -m coars_verl.bench.self_distill [--steps 4] [--artifacts artifacts]

Runs ``cpu_coars_tiny`` twice in a row, self-distillation off then on (rlsd, the recipe default),
same model, data and seed, and prints: mean seconds per training step (the first step, which
includes warm-up, is left out) and their ratio; teacher-pass tokens against the old-log-prob
pass tokens (every sample's prompt + response); the teacher pass's own time; and the share of a
step spent in our own code: the dialogue core in the agent loop (prompts, parsing, state), the
reward, and the advantage step (per-role rewards, estimator, metrics). Targets: step time ratio
<= 1.25, token ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from coars_verl.cpu.launch import run_main_ppo
from coars_verl.demo import build_model, prepare_movielens


def mean_after_first(values: list[float]) -> float:
    return statistics.fmean(values[1:] if len(values) > 1 else values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.bench.self_distill", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", choices=("primed", "tiny", "smollm2"), default="primed")
    args = parser.parse_args(argv)

    artifacts = args.artifacts.resolve()
    model = build_model(args.model, artifacts / "models")
    data = prepare_movielens(artifacts / "data" / "movielens-100k")
    common = [
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'valid.parquet'}",
        f"trainer.total_training_steps={args.steps}",
        f"data.train_max_samples={4 * args.steps}",
    ]
    results = {}
    for mode in ("off", "rlsd"):
        run = run_main_ppo("cpu_coars_tiny", common + [f"algorithm.coars.self_distill.mode={mode}"], artifacts / "bench" / f"self_distill_{mode}")
        if run.returncode != 0:
            print(run.log_tail(3000), file=sys.stderr)
            return run.returncode
        results[mode] = run.metrics

    step_off = mean_after_first([m["timing_s/step"] for m in results["off"]])
    step_on = mean_after_first([m["timing_s/step"] for m in results["rlsd"]])
    teacher_tokens = sum(m["coars/sd/teacher_tokens"] for m in results["rlsd"])
    student_tokens = sum(m["coars/sd/student_tokens"] for m in results["rlsd"])
    teacher_s = mean_after_first([m["timing_s/coars_teacher"] for m in results["rlsd"]])
    old_lp_s = mean_after_first([m["timing_s/old_log_prob"] for m in results["rlsd"]])
    context_share = statistics.fmean(m["coars/sd/context_share"] for m in results["rlsd"])
    own = {}
    for mode, metrics in results.items():
        parts = {name: mean_after_first([m[f"timing_s/{name}"] for m in metrics]) for name in ("coars_dialogue_core", "coars_reward", "coars_advantage")}
        step = mean_after_first([m["timing_s/step"] for m in metrics])
        own[mode] = {**{k: round(v, 4) for k, v in parts.items()}, "share_of_step": round(sum(parts.values()) / step, 4)}
    report = {
        "steps": args.steps,
        "model": args.model,
        "step_s_off": round(step_off, 3),
        "step_s_rlsd": round(step_on, 3),
        "step_time_ratio": round(step_on / step_off, 3),
        "teacher_tokens": int(teacher_tokens),
        "old_log_prob_tokens": int(student_tokens),
        "token_ratio": round(teacher_tokens / student_tokens, 3),
        "teacher_pass_s": round(teacher_s, 3),
        "old_log_prob_pass_s": round(old_lp_s, 3),
        "context_share": round(context_share, 3),
        "own_code": own,
    }
    print(f"self-distillation cost, cpu_coars_tiny, {args.steps} steps each, model {args.model}")
    print(f"  seconds per step (steps 2..{args.steps}): off {step_off:.2f}  rlsd {step_on:.2f}  ratio {report['step_time_ratio']:.3f}  (target <= 1.25)")
    print(f"  teacher-pass tokens {teacher_tokens:.0f} / old-log-prob tokens {student_tokens:.0f} = {report['token_ratio']:.3f}  (target <= 1.5)")
    print(f"  teacher pass {teacher_s:.2f} s per step (old-log-prob pass {old_lp_s:.2f} s); samples with a teacher context {context_share:.0%}")
    for mode, parts in own.items():
        print(
            f"  own code, {mode}: dialogue core {parts['coars_dialogue_core']:.3f} s + reward {parts['coars_reward']:.4f} s + "
            f"advantage step {parts['coars_advantage']:.3f} s per step = {parts['share_of_step']:.1%} of the step"
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
