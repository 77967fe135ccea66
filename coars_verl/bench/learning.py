"""``python -m coars_verl.bench.learning``: does training through main_ppo improve a recommender?

On the learning task (:mod:`coars_verl.datasets.learning_task`), from the cold-start model
(:mod:`coars_verl.models.cold_start`), every variant (an ablation override of
``recipes/cpu_learning_tiny.yaml``) is trained for each seed through ``python -m
verl.trainer.main_ppo`` on CPU, a checkpoint is kept every ``--eval-every`` steps, and every
checkpoint is evaluated by ``coars_verl.eval`` (greedy dialogues on the held-out test users,
user simulation) exactly as the start model is. Data and start model are shared by all runs.

Writes into ``--out``: ``data/``, ``models/``, ``runs/<variant>-s<seed>/`` (train log, metrics,
checkpoints, ``eval/step_<k>/``), ``summary.json`` (per variant and seed: the evaluation curve,
wall and step times, the self-distillation statistics), ``curves.png`` (Hit@1 per step, mean and
range over seeds) and ``table.md``. Every stage is skipped when its output exists, a killed
training run resumes from its last checkpoint, a killed evaluation where it stopped: run the same
command again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

from coars_verl.cpu.launch import RECIPES_DIR, run_main_ppo
from coars_verl.utils.metrics_log import read_metrics

RECIPE = "cpu_learning_tiny"
PROMPTS_FILE = RECIPES_DIR / "prompts" / "compact.yaml"
VARIANTS = {
    "coars": (),
    "no_self_distill": ("+ablation=no_self_distill",),
    "outcome_only": ("+ablation=outcome_only",),
    "no_coupling": ("+ablation=no_coupling",),
    "false_accept_0.5": ("coars.reward.false_accept_weight=0.5",),
    "false_reject_1": ("coars.reward.false_reject_weight=1.0",),
    "false_reject_3": ("coars.reward.false_reject_weight=3.0",),
    "beta_2": ("coars.reward.beta=2.0",),
    "user_balanced": ("coars.reward.user_balance=batch",),
    "teacher_sibling": ("+ablation=teacher_sibling",),
    "teacher_hindsight": ("+ablation=teacher_hindsight",),
    "teacher_target": ("+ablation=teacher_target",),
    "teacher_neighbor": ("+ablation=teacher_neighbor",),
    "reczero": (),
}
SINGLE_AGENT_VARIANTS = {"reczero": "cpu_reczero_tiny"}
"""Variants that are not CoARS dialogues: recipe name. RecZero-style: one agent, one turn, reasoning
tags, plain GRPO on the outcome, on the same samples (data/reczero/, data_prep/reczero.py), evaluated
in one turn with its own prompt and no user simulation (it has no user agent)."""
RECZERO_PROMPTS_FILE = RECIPES_DIR / "prompts" / "reczero.yaml"
RECZERO_MAX_TOKENS = 64
"""Tokens per RecZero answer in training (``data.max_response_length``) and evaluation: room for the tags."""
SD_METRICS = (
    "coars/sd/context_share",
    "coars/sd/context_share/neighbor",
    "coars/sd/recommender/delta_mean",
    "coars/sd/recommender/delta_std",
    "coars/sd/recommender/clip_share",
    "coars/sd/lambda",
)
TRAINING_METRICS = (
    "coars/dialogue/hit_rate",
    "coars/rec/valid_ratio",
    "coars/user/accuracy",
    "coars/user/false_accepts_mean",
    "coars/user/false_rejects_mean",
    "coars/user/balance_weight_target",
    "actor/grad_norm",
    "actor/entropy",
)
STEP_TIMES = (
    "timing_s/step",
    "timing_s/gen",
    "timing_s/old_log_prob",
    "timing_s/coars_teacher",
    "timing_s/update_actor",
    "timing_s/coars_dialogue_core",
    "timing_s/coars_reward",
    "timing_s/coars_advantage",
)
"""Where a step's time goes: generation, the log-prob passes (student, teacher), the update, our own code."""


@dataclass(frozen=True)
class Preset:
    """Sizes of one benchmark run (task, start model, training, evaluation)."""

    steps: int
    """Training steps (GRPO updates) of each variant."""
    eval_every: int
    """Held-out evaluation every this many steps (and at step 0)."""
    train_users: int = 2000
    test_users: int = 64
    num_candidates: int = 10
    cold_start_steps: int = 500
    """Supervised steps of the cold start on logged dialogues (the start model every variant shares)."""
    cold_start_lr: float = 2e-3
    logged_hit_rate: float = 0.3
    """Share of the cold start's logged dialogues that recommend the target."""
    logged_valid_mistake_rate: float = 0.0
    """Share of the cold start's logged mistakes that are candidates the user rejects (0: all repeats)."""
    prompts_per_step: int = 8
    samples_per_prompt: int = 8
    prompts_per_update: int = 4
    """PPO mini-batch in prompts: 8 prompts x 8 samples x 2 roles make 4 optimizer steps per training step."""
    lr: float = 2e-4
    max_turns: int = 3
    max_tokens: int = 24
    """Per turn, for both agents."""
    eval_users: int = 32
    """Test users evaluated at each evaluation point (of ``test_users``)."""


PRESETS = {
    "demo": Preset(steps=10, eval_every=10),
    "quick": Preset(steps=30, eval_every=10),
    "full": Preset(steps=80, eval_every=10),
    # the user agent's question: a cold start whose logged mistakes reach the user (it learns to say no)
    "quick_rejections": Preset(steps=30, eval_every=10, logged_valid_mistake_rate=0.7),
}


def prepare_task(preset: Preset, out: Path) -> Path:
    from coars_verl.datasets.learning_task import LearningTaskConfig, generate
    from coars_verl.datasets.pipeline import write_outputs

    if (out / "stats.json").exists():
        return out
    config = LearningTaskConfig(train_users=preset.train_users, test_users=preset.test_users, num_candidates=preset.num_candidates)
    write_outputs(generate(config), out, quiet=True)
    return out


def build_start_model(preset: Preset, data: Path, out: Path) -> Path:
    from coars_verl.dialogue.prompts import load_prompt_overrides
    from coars_verl.models.cold_start import build_cold_start_model_result

    result = build_cold_start_model_result(out, data, prompts=load_prompt_overrides(PROMPTS_FILE), steps=preset.cold_start_steps,
                                           lr=preset.cold_start_lr, logged_hit_rate=preset.logged_hit_rate,
                                           logged_valid_mistake_rate=preset.logged_valid_mistake_rate, max_turns=preset.max_turns)
    print(f"start model: {result.path} ({result.summary()})", flush=True)
    return result.path


def evaluate(model: Path, data: Path, out: Path, preset: Preset, label: str, single_agent: bool = False) -> dict:
    """``coars_verl.eval`` on the test users (resumable); returns the results' metrics. ``single_agent``:
    the RecZero-style evaluation (its prompt, one turn, no user simulation)."""
    from coars_verl.eval.cli import main as eval_main

    results = out / "results.json"
    if not results.exists():
        common = ["--model", str(model), "--data", str(data), "--out", str(out), "--label", label, "--split", "test",
                  "--max-samples", str(preset.test_users), "--no-progress"]
        if single_agent:
            setting = ["--prompts", str(RECZERO_PROMPTS_FILE), "--max-turns", "1", "--max-tokens", str(RECZERO_MAX_TOKENS),
                       "--tasks", "dialogue"]
        else:
            setting = ["--max-users", str(preset.eval_users), "--prompts", str(PROMPTS_FILE), "--max-turns", str(preset.max_turns),
                       "--max-tokens", str(preset.max_tokens)]
        code = eval_main(common + setting)
        if code != 0:
            raise SystemExit(f"evaluation of {model} failed with exit code {code}")
    return json.loads(results.read_text())["metrics"]


def curve_point(step: int, metrics: dict) -> dict:
    dialogue, user_sim = metrics.get("recommendation") or {}, metrics.get("user_sim") or {}
    return {
        "step": step,
        "hit_at_1": dialogue.get("hit_at_1"),
        "hit_at_1_turn1": dialogue.get("hit_at_1_turn1"),
        "valid_ratio": dialogue.get("valid_ratio"),
        "user_sim_f1": user_sim.get("f1_micro"),
        "user_sim_accuracy": user_sim.get("accuracy"),
    }


def _training_overrides(preset: Preset, model: Path, data: Path, run_dir: Path, seed: int, variant: str) -> list[str]:
    if variant in SINGLE_AGENT_VARIANTS:
        rows = data / "reczero"
        setting = [f"data.train_files={rows / 'train.parquet'}", f"data.val_files={rows / 'valid.parquet'}",
                   "data.max_prompt_length=1024", f"data.max_response_length={RECZERO_MAX_TOKENS}"]
    else:
        setting = [f"data.train_files={data / 'train.parquet'}", f"data.val_files={data / 'valid.parquet'}",
                   f"coars.dialogue.max_turns={preset.max_turns}", f"coars.agent_loop.max_tokens_per_turn={preset.max_tokens}"]
    return [
        f"actor_rollout_ref.model.path={model}",
        *setting,
        f"data.train_batch_size={preset.prompts_per_step}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={preset.prompts_per_update}",
        f"actor_rollout_ref.rollout.n={preset.samples_per_prompt}",
        f"actor_rollout_ref.actor.optim.lr={preset.lr:g}",
        f"data.seed={seed}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"trainer.total_training_steps={preset.steps}",
        f"trainer.save_freq={preset.eval_every}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"trainer.rollout_data_dir={run_dir / 'rollouts'}",  # verl's per-step dump and the credit dump (python -m coars_verl.viewer RUN_DIR)
        "trainer.resume_mode=auto",
        "trainer.max_actor_ckpt_to_keep=null",
        *VARIANTS[variant],
    ]


def train(preset: Preset, model: Path, data: Path, run_dir: Path, seed: int, variant: str) -> dict:
    """Train one variant and seed (resuming a killed run); returns its training record."""
    record_path = run_dir / "training.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = sorted(run_dir.glob("metrics.part*.jsonl"))
    if (run_dir / "metrics.jsonl").exists():  # verl's file logger truncates: keep what a killed attempt logged
        (run_dir / "metrics.jsonl").rename(run_dir / f"metrics.part{len(parts)}.jsonl")
    print(f"training {variant} seed {seed}: {preset.steps} steps, log {run_dir / 'train.log'}", flush=True)
    recipe = SINGLE_AGENT_VARIANTS.get(variant, RECIPE)
    run = run_main_ppo(recipe, _training_overrides(preset, model, data, run_dir, seed, variant), run_dir, timeout_s=6 * 3600)
    if run.returncode != 0:
        print(run.log_tail(4000), file=sys.stderr)
        raise SystemExit(f"training {variant} seed {seed} failed (exit {run.returncode}); log: {run.log_path}")
    steps = {}
    for path in [*sorted(run_dir.glob("metrics.part*.jsonl")), run.metrics_path]:
        if path.exists():
            steps.update({row["step"]: row for row in read_metrics(path)})
    rows = [steps[k] for k in sorted(steps)]
    step_times = [row["timing_s/step"] for row in rows if "timing_s/step" in row]
    record = {
        "variant": variant,
        "seed": seed,
        "wall_s": round(run.wall_s, 1),
        "steps": len(rows),
        "s_per_step": round(statistics.median(step_times[1:] or step_times), 2) if step_times else None,
        "step_time_median_s": {k: round(statistics.median(row[k] for row in rows[1:] or rows), 3) for k in STEP_TIMES if all(k in row for row in rows)},
        "per_step": [{"step": row["step"], **{k: row[k] for k in (*TRAINING_METRICS, *SD_METRICS, *STEP_TIMES) if k in row}} for row in rows],
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_one(preset: Preset, model: Path, data: Path, out: Path, variant: str, seed: int, start: dict) -> dict:
    run_dir = out / "runs" / f"{variant}-s{seed}"
    started = time.perf_counter()
    record = train(preset, model, data, run_dir, seed, variant)
    curve = [dict(start)]
    for step in range(preset.eval_every, preset.steps + 1, preset.eval_every):
        checkpoint = run_dir / "checkpoints" / f"global_step_{step}"
        metrics = evaluate(checkpoint, data, run_dir / "eval" / f"step_{step}", preset, f"{variant} seed {seed} step {step}",
                           single_agent=variant in SINGLE_AGENT_VARIANTS)
        curve.append(curve_point(step, metrics))
    return {**record, "curve": curve, "bench_s": round(time.perf_counter() - started, 1)}


def steps_to_reach(curve: list[dict], threshold: float) -> Optional[int]:
    for point in curve:
        if point["hit_at_1"] is not None and point["hit_at_1"] >= threshold:
            return point["step"]
    return None


def rollout_hit_rates(record: dict, window: int = 5) -> list[float]:
    """Mean sampled hit rate of the training rollouts over consecutive windows of steps (finer than the evaluations)."""
    rates = [row["coars/dialogue/hit_rate"] for row in record["per_step"] if "coars/dialogue/hit_rate" in row]
    return [statistics.mean(rates[k : k + window]) for k in range(0, len(rates), window)]


def summarize(runs: dict[str, list[dict]], start: dict, threshold: float) -> str:
    """The markdown table: per variant, held-out Hit@1 at the start and the end (mean and range over
    seeds), and the rollouts' hit rate per 5 steps (mean over seeds)."""
    lines = [
        f"| variant | seeds | Hit@1 start (%) | Hit@1 end (%) | end range (%) | first step with Hit@1 >= {threshold:.0%} | "
        "rollout hit rate per 5 steps (%) | user-sim F1 end (%) | s/step | train wall (s) |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]

    def pct(value: Optional[float]) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    for variant, records in runs.items():
        ends = [r["curve"][-1]["hit_at_1"] for r in records]
        f1 = [r["curve"][-1]["user_sim_f1"] for r in records if r["curve"][-1]["user_sim_f1"] is not None]
        reach = [steps_to_reach(r["curve"], threshold) for r in records]
        walls = ", ".join(f"{r['wall_s']:.0f}" for r in records)
        windows = [rollout_hit_rates(r) for r in records]
        rollout = " / ".join(f"{100 * statistics.mean(w[k] for w in windows):.0f}" for k in range(min(map(len, windows))))
        lines.append(
            f"| {variant} | {len(records)} | {pct(records[0]['curve'][0]['hit_at_1'])} | {pct(statistics.mean(ends))} | "
            f"{pct(min(ends))}-{pct(max(ends))} | {', '.join('never' if s is None else str(s) for s in reach)} | {rollout or '-'} | "
            f"{pct(statistics.mean(f1)) if f1 else '-'} | {statistics.mean(r['s_per_step'] for r in records):.1f} | "
            f"{walls} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for variant, records in runs.items():
        steps = [p["step"] for p in records[0]["curve"]]
        values = [[100 * r["curve"][i]["hit_at_1"] for r in records] for i in range(len(steps))]
        line = ax.plot(steps, [statistics.mean(v) for v in values], marker="o", label=f"{variant} ({len(records)} seeds)")
        if len(records) > 1:
            ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], alpha=0.2, color=line[0].get_color())
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out Hit@1 (%), greedy")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("learning task: Hit@1 on test users (mean, range over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(preset: Preset, variants: list[str], seeds: list[int], out: Path, threshold: float = 0.5) -> dict:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = prepare_task(preset, out / "data")
    model = build_start_model(preset, data, out / "models" / "cold-start")
    start = curve_point(0, evaluate(model, data, out / "eval_start", preset, "cold start (step 0)"))
    print(f"step 0 (cold start): held-out Hit@1 {100 * start['hit_at_1']:.1f} %", flush=True)
    single_agent_start = None
    if any(v in SINGLE_AGENT_VARIANTS for v in variants):
        from coars_verl.datasets.reczero import write_reczero

        if not (data / "reczero" / "train.parquet").exists():
            write_reczero(data, data / "reczero")
        single_agent_start = curve_point(0, evaluate(model, data, out / "eval_start_reczero", preset, "cold start, one turn (step 0)",
                                                     single_agent=True))
        print(f"step 0 (cold start), RecZero prompt, one turn: held-out Hit@1 {100 * single_agent_start['hit_at_1']:.1f} %", flush=True)
    runs: dict[str, list[dict]] = {}
    for variant in variants:
        for seed in seeds:
            record = run_one(preset, model, data, out, variant, seed, single_agent_start if variant in SINGLE_AGENT_VARIANTS else start)
            runs.setdefault(variant, []).append(record)
            print(f"{variant} seed {seed}: Hit@1 " + " -> ".join(f"{100 * p['hit_at_1']:.0f}" for p in record["curve"])
                  + f" (steps {', '.join(str(p['step']) for p in record['curve'])}); {record['s_per_step']} s/step", flush=True)
    summary = {
        "preset": asdict(preset),
        "variants": variants,
        "seeds": seeds,
        "data": str(data),
        "start_model": str(model),
        "start": start,
        **({"start_single_agent": single_agent_start} if single_agent_start is not None else {}),
        "runs": runs,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = summarize(runs, start, threshold)
    (out / "table.md").write_text(table)
    plot(runs, out / "curves.png")
    print("\n" + table)
    print(f"summary: {out / 'summary.json'}\ncurves: {out / 'curves.png'}\ntable: {out / 'table.md'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.bench.learning", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["coars", "no_self_distill", "outcome_only"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--eval-every", type=int, help="steps between evaluated checkpoints (default: the preset's)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/learning"))
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    preset = replace(preset, steps=args.steps or preset.steps, eval_every=args.eval_every or preset.eval_every)
    if preset.steps % preset.eval_every:
        parser.error(f"--steps ({preset.steps}) must be a multiple of --eval-every ({preset.eval_every})")
    run_bench(preset, args.variants, args.seeds, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
