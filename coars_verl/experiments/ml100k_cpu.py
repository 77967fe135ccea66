"""``python -m coars_verl.experiments.ml100k_cpu`` (``make results``): the README's results on CPU.

Everything offline, on MovieLens ml-100k test users (the copy shipped in ``recbole``), every
method scored by ``coars_verl.eval`` on the same stored samples and candidates:

* **SmolLM2-135M-Instruct**: random and popularity baselines; the model zero-shot; after a short
  CoARS run (``recipes/cpu_coars_smollm2.yaml``) from the zero-shot model; the model format-primed
  (``coars_verl.models.primed --base smollm2``: a few supervised steps on synthetic dialogues with
  random answers, teaching only the two answer formats); and after a short CoARS run from it.
* **Ablations** (``recipes/ablation/*.yaml`` over ``recipes/cpu_coars_tiny.yaml``, the format-primed
  tiny model, so that they fit in minutes): full CoARS and each one-override ablation.

Every stage is skipped when its output exists (a training run with its last checkpoint, an
evaluation with its ``results.json``; an interrupted evaluation resumes), so the command can be
stopped and started again. Writes ``<artifacts>/results/{smollm2,ablations,training_smollm2,training_ablations}.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from coars_verl.cpu.launch import RECIPES_DIR, run_main_ppo
from coars_verl.demo import prepare_movielens

ABLATIONS = ("outcome_only", "no_self_distill", "no_coupling", "teacher_memory", "teacher_sibling", "teacher_hindsight", "teacher_target", "teacher_neighbor", "teacher_reference")
NO_LORA_EXTRA = {"teacher_reference": ("actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.actor.kl_loss_coef=0")}
"""The tiny model trains without LoRA: the reference teacher then needs verl's reference worker (a zero-weight KL term)."""
RECIPES_ABLATIONS = frozenset(path.stem for path in (RECIPES_DIR / "ablation").glob("*.yaml"))


@dataclass(frozen=True)
class TrainingJob:
    """One ``main_ppo`` run: ``recipe`` from the start model ``model`` for ``steps`` steps."""

    name: str
    label: str
    recipe: str
    model: str
    steps: int
    overrides: tuple[str, ...] = field(default=())

    def checkpoint(self, runs: Path) -> Path:
        return runs / self.name / "checkpoints" / f"global_step_{self.steps}"


def build_models(root: Path, names: set[str]) -> dict[str, Path]:
    from coars_verl.models.primed import build_primed_model_result
    from coars_verl.models.smollm2 import convert_smollm2_result

    builders = {
        "smollm2": lambda: convert_smollm2_result(root / "smollm2-135m-instruct"),
        "smollm2-primed": lambda: build_primed_model_result(root / "smollm2-primed", base="smollm2"),
        "tiny-primed": lambda: build_primed_model_result(root / "tiny-primed"),
    }
    models = {}
    for name in sorted(names):
        result = builders[name]()
        print(f"model {name}: {result.path} ({result.summary()})", flush=True)
        models[name] = result.path
    return models


def train(job: TrainingJob, models: dict[str, Path], data: Path, runs: Path) -> dict:
    """Run the job unless its last checkpoint exists; return its training summary."""
    run_dir = runs / job.name
    summary_path = run_dir / "training.json"
    if job.checkpoint(runs).is_dir() and summary_path.is_file():
        print(f"training {job.name}: done before ({job.checkpoint(runs)})", flush=True)
        return json.loads(summary_path.read_text())
    overrides = [
        f"actor_rollout_ref.model.path={models[job.model]}",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'valid.parquet'}",
        f"trainer.total_training_steps={job.steps}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"trainer.save_freq={job.steps}",
        *job.overrides,
    ]
    print(f"training {job.name}: main_ppo --config-name {job.recipe} {' '.join(job.overrides)} ({job.steps} steps)", flush=True)
    run = run_main_ppo(job.recipe, overrides, run_dir, timeout_s=4 * 3600)
    if run.returncode != 0 or not job.checkpoint(runs).is_dir():
        print(run.log_tail(4000), file=sys.stderr)
        raise SystemExit(f"training {job.name} failed (exit {run.returncode}); log: {run.log_path}")
    summary = training_summary(job, run.metrics, run.wall_s)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def training_summary(job: TrainingJob, metrics: list[dict], wall_s: float) -> dict:
    """What a reader needs to judge a short run: time, and whether the policy saw any gradient."""

    def series(name: str) -> list[float]:
        return [round(float(step[name]), 4) for step in metrics if name in step]

    return {
        "name": job.name,
        "label": job.label,
        "recipe": job.recipe,
        "start_model": job.model,
        "overrides": list(job.overrides),
        "steps": job.steps,
        "wall_s": round(wall_s, 1),
        "step_s": series("timing_s/step"),
        "grad_norm": series("actor/grad_norm"),
        "rec_reward_mean": series("coars/rec/reward_mean"),
        "user_reward_mean": series("coars/user/reward_mean"),
        "rec_valid_ratio": series("coars/rec/valid_ratio"),
        "hit_rate": series("coars/dialogue/hit_rate"),
    }


def evaluate(label: str, model: Path, data: Path, out: Path, selection: list[str]) -> Path:
    from coars_verl.eval.cli import main as eval_main

    if (out / "results.json").is_file():
        result = json.loads((out / "results.json").read_text())
        if result.get("complete"):
            print(f"evaluation {out.name}: done before", flush=True)
            return out
    print(f"evaluation {out.name}: {model}", flush=True)
    code = eval_main(["--model", str(model), "--data", str(data), "--out", str(out), "--label", label, "--no-progress", *selection])
    if code != 0:
        raise SystemExit(f"evaluation of {model} failed with exit code {code}")
    return out


def training_table(summaries: list[dict]) -> str:
    lines = [
        "| run | recipe | start model | steps | wall (s) | s/step | steps with grad_norm > 0 | rec reward per step | rec ValidRatio per step |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for s in summaries:
        per_step = sum(s["step_s"]) / len(s["step_s"]) if s["step_s"] else float("nan")
        moved = sum(1 for g in s["grad_norm"] if g > 0)
        lines.append(
            f"| {s['label']} | `{s['recipe']}` {' '.join(s['overrides'])} | {s['start_model']} | {s['steps']} | {s['wall_s']:.0f} | {per_step:.0f} "
            f"| {moved} / {len(s['grad_norm'])} | {', '.join(f'{v:.2f}' for v in s['rec_reward_mean'])} "
            f"| {', '.join(f'{v:.2f}' for v in s['rec_valid_ratio'])} |"
        )
    return "\n".join(lines) + "\n"


def comparison_table(paths: list[Path], out: Path) -> str:
    from coars_verl.eval.report import load_result, markdown_table
    from coars_verl.eval.table import result_paths

    table = markdown_table([load_result(path) for path in result_paths([str(p) for p in paths])])
    out.write_text(table)
    return table


def run_smollm2(args, data: Path, artifacts: Path, selection: list[str], baselines: list[Path]) -> None:
    """Zero-shot and format-primed SmolLM2, each before and after a short CoARS run."""
    models = build_models(artifacts / "models", {"smollm2", "smollm2-primed"})
    runs, evaluations, results = artifacts / "runs", artifacts / "eval", artifacts / "results"
    steps, rows, summaries = args.smollm2_steps, {}, []
    # The format-primed model first: the zero-shot model's answers loop to the token limit, so it is the slowest.
    for model, label in (("smollm2-primed", "SmolLM2-135M format-primed"), ("smollm2", "SmolLM2-135M zero-shot")):
        rows[model] = evaluate(label, models[model], data, evaluations / model, selection)
        if model == "smollm2" and args.skip_zero_shot_coars:
            continue
        job = TrainingJob(f"coars_{model}", f"{label} + CoARS ({steps} steps)", "cpu_coars_smollm2", model, steps)
        summaries.append(train(job, models, data, runs))
        rows[job.name] = evaluate(job.label, job.checkpoint(runs), data, evaluations / job.name, selection)
    order = ("smollm2", "coars_smollm2", "smollm2-primed", "coars_smollm2-primed")
    print(comparison_table([*baselines, *(rows[name] for name in order if name in rows)], results / "smollm2.md"), flush=True)
    print(write_training_table(summaries, results / "training_smollm2.md"), flush=True)


def run_ablations(args, data: Path, artifacts: Path) -> None:
    """Full CoARS and every ablation recipe from the format-primed tiny model, evaluated as trained."""
    from coars_verl.eval.baselines import main as baselines_main

    models = build_models(artifacts / "models", {"tiny-primed"})
    runs, evaluations, results = artifacts / "runs", artifacts / "eval", artifacts / "results"
    steps = args.ablation_steps
    samples = ["--one-per-user", "--max-samples", str(args.ablation_eval_dialogues), "--max-users", str(args.ablation_eval_users)]
    # As cpu_coars_tiny trains: 3 turns, 32 tokens per answer.
    selection = [*samples, "--max-turns", "3", "--max-tokens", "32", "--batch-size", str(args.batch_size)]
    baselines_main(["--data", str(data), "--out", str(evaluations / "baselines_ablations"), *samples])
    rows = [evaluations / "baselines_ablations" / "random_expected.json", evaluations / "baselines_ablations" / "popularity.json"]
    rows.append(evaluate("tiny format-primed (untrained)", models["tiny-primed"], data, evaluations / "tiny-primed", selection))
    jobs = [TrainingJob("tiny_coars", f"CoARS ({steps} steps)", "cpu_coars_tiny", "tiny-primed", steps)]
    jobs += [TrainingJob(f"tiny_{name}", f"ablation {name} ({steps} steps)", "cpu_coars_tiny", "tiny-primed", steps,
                         (f"+ablation={name}", *NO_LORA_EXTRA.get(name, ()))) for name in ABLATIONS]
    summaries = []
    for job in jobs:
        summaries.append(train(job, models, data, runs))
        rows.append(evaluate(job.label, job.checkpoint(runs), data, evaluations / job.name, selection))
    print(comparison_table(rows, results / "ablations.md"), flush=True)
    print(write_training_table(summaries, results / "training_ablations.md"), flush=True)


def write_training_table(summaries: list[dict], out: Path) -> str:
    table = training_table(summaries)
    out.write_text(table)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.experiments.ml100k_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="where models, data, runs and evaluations go")
    parser.add_argument("--parts", nargs="+", choices=("smollm2", "ablations"), default=["smollm2", "ablations"])
    smollm2 = parser.add_argument_group("SmolLM2 table")
    smollm2.add_argument("--smollm2-steps", type=int, default=3, help="CoARS steps of the SmolLM2 runs")
    smollm2.add_argument("--skip-zero-shot-coars", action="store_true",
                         help="no CoARS run from the zero-shot SmolLM2 (it never writes the answer format, so GRPO gets no gradient)")
    smollm2.add_argument("--eval-dialogues", type=int, default=None, help="test dialogues (one per user; default: every test user)")
    smollm2.add_argument("--eval-users", type=int, default=None, help="user-simulation test users (default: all)")
    smollm2.add_argument("--max-turns", type=int, default=5, help="dialogue turns in evaluation (coars.dialogue.max_turns' default 5)")
    smollm2.add_argument("--max-tokens", type=int, default=64, help="tokens per answer in evaluation")
    ablations = parser.add_argument_group("ablation table (tiny model)")
    ablations.add_argument("--ablation-steps", type=int, default=3, help="CoARS steps of each run")
    ablations.add_argument("--ablation-eval-dialogues", type=int, default=16, help="test dialogues (one per user)")
    ablations.add_argument("--ablation-eval-users", type=int, default=8, help="user-simulation test users")
    parser.add_argument("--batch-size", type=int, default=16, help="evaluation batch (dialogues or questions)")
    args = parser.parse_args(argv)

    from coars_verl.eval.baselines import main as baselines_main

    artifacts = args.artifacts.resolve()
    data = prepare_movielens(artifacts / "data" / "movielens-100k")
    (artifacts / "results").mkdir(parents=True, exist_ok=True)
    if "smollm2" in args.parts:
        samples = ["--one-per-user"]
        samples += ["--max-samples", str(args.eval_dialogues)] if args.eval_dialogues else []
        samples += ["--max-users", str(args.eval_users)] if args.eval_users else []
        selection = [*samples, "--max-turns", str(args.max_turns), "--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size)]
        baselines = artifacts / "eval" / "baselines"
        baselines_main(["--data", str(data), "--out", str(baselines), *samples])
        run_smollm2(args, data, artifacts, selection, [baselines / "random_expected.json", baselines / "popularity.json"])
    if "ablations" in args.parts:
        run_ablations(args, data, artifacts)
    print(f"tables: {artifacts / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
