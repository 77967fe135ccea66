"""``python -m coars_verl.demo`` (what ``make demo`` runs): CoARS on CPU, end to end, offline.

``--task learning`` (the default; ``make demo``): learning you can see, in about 6 minutes. On the
controlled learning task (``data_prep/learning_task.py``), builds the cold-start tiny model,
trains CoARS through ``main_ppo`` and prints held-out Hit@1 before and after, and where the curve
is (:mod:`coars_verl.bench.learning` with its ``demo`` preset), and ends by writing the run's viewer
page (:mod:`coars_verl.viewer`: its dialogues and token credit) and printing its path.

``--task ml100k`` (``make demo-ml100k``): the pipeline on real data, which the tiny model cannot
learn (it knows nothing about films):

1. builds the tiny model primed to the answer formats (``--model tiny`` for the purely random one,
   ``--model smollm2`` to convert SmolLM2-135M-Instruct);
2. prepares MovieLens ml-100k from the copy shipped in the PyPI package ``recbole``;
3. trains CoARS through ``python -m verl.trainer.main_ppo`` with ``recipes/cpu_coars_tiny.yaml``;
4. evaluates the trained checkpoint and the untrained model on a few test users, with the random
   and popularity baselines on the same samples, and prints the table and where the logs are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from coars_verl.cpu.launch import run_main_ppo

REPORTED = (
    "coars/rec/reward_mean",
    "coars/user/reward_mean",
    "coars/dialogue/hit_rate",
    "coars/dialogue/turns_mean",
    "coars/rec/valid_ratio",
    "coars/user/accuracy",
    "actor/grad_norm",
    "timing_s/step",
)


def movielens_100k_from_recbole() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise SystemExit("recbole is not installed: pip install --no-deps recbole==1.2.1 (it ships MovieLens ml-100k)")
    folder = Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").exists():
        raise SystemExit(f"{folder}: no ml-100k.inter; expected recbole==1.2.1's dataset_example/ml-100k")
    return folder


def prepare_movielens(out: Path) -> Path:
    if (out / "stats.json").exists():
        print(f"data: {out} (already prepared)")
        return out
    from coars_verl.datasets.cli import main_movielens

    code = main_movielens(["--raw-dir", str(movielens_100k_from_recbole()), "--out", str(out), "--quiet"])
    if code != 0:
        raise SystemExit(f"data preparation failed with exit code {code}")
    return out


def build_model(kind: str, root: Path) -> Path:
    if kind == "primed":
        from coars_verl.models.primed import build_primed_model

        return build_primed_model(root / "tiny-primed")
    if kind == "tiny":
        from coars_verl.models.tiny import build_tiny_model

        return build_tiny_model(root / "tiny")
    from coars_verl.models.smollm2 import convert_smollm2

    return convert_smollm2(root / "smollm2-135m-instruct")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="where models, data and runs go")
    parser.add_argument("--task", choices=("learning", "ml100k"), default="learning",
                        help="learning: the controlled task a CPU model learns (default); ml100k: MovieLens ml-100k")
    parser.add_argument("--model", choices=("primed", "tiny", "smollm2"), default="primed", help="ml100k: the start model")
    parser.add_argument("--steps", type=int, help="training steps (default: learning 10, ml100k 2)")
    parser.add_argument("--eval-dialogues", type=int, default=16, help="ml100k: test dialogues evaluated (one per user)")
    parser.add_argument("--eval-users", type=int, default=8, help="ml100k: test users of the user-simulation evaluation")
    parser.add_argument("overrides", nargs="*", help="ml100k: extra Hydra overrides for main_ppo (key=value)")
    args = parser.parse_args(argv)
    if args.task == "learning":
        if args.overrides:
            parser.error("Hydra overrides apply to --task ml100k; the learning demo runs the benchmark's demo preset "
                         "(python -m coars_verl.bench.learning for other settings)")
        return learning_demo(args.artifacts.resolve(), args.steps)
    args.steps = args.steps or 2

    artifacts = args.artifacts.resolve()
    model = build_model(args.model, artifacts / "models")
    print(f"model: {model}")
    data = prepare_movielens(artifacts / "data" / "movielens-100k")
    run_dir = artifacts / "runs" / f"cpu_coars_{args.model}"
    overrides = [
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'valid.parquet'}",
        f"trainer.total_training_steps={args.steps}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"trainer.save_freq={args.steps}",
        f"trainer.rollout_data_dir={run_dir / 'rollouts'}",
        *args.overrides,
    ]
    print(f"training: main_ppo --config-name cpu_coars_tiny ({args.steps} steps); log: {run_dir / 'train.log'}")
    run = run_main_ppo("cpu_coars_tiny", overrides, run_dir, echo=True)
    if run.returncode != 0:
        print(run.log_tail(4000), file=sys.stderr)
        print(f"\ntraining failed (exit {run.returncode}); full log: {run.log_path}", file=sys.stderr)
        return run.returncode
    print("\nstep  " + "  ".join(name.split("/", 1)[1] for name in REPORTED))
    for step in run.metrics:
        print(f"{step['step']:>4}  " + "  ".join(f"{step.get(name, float('nan')):.3f}" for name in REPORTED))
    table = evaluate_demo(run_dir, model, data, args)
    summary = {"run_dir": str(run_dir), "log": str(run.log_path), "metrics": str(run.metrics_path), "wall_s": round(run.wall_s, 1), "table": str(table)}
    (run_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\ntraining took {run.wall_s:.0f} s. logs: {run.log_path}\nmetrics (one JSON per step): {run.metrics_path}\nevaluation table: {table}")
    print(f"viewer (training dialogues and token credit): {viewer_page(run_dir)}\n"
          f"viewer (evaluated dialogues): {viewer_page(run_dir / 'eval' / 'trained')}")
    return 0


def learning_demo(artifacts: Path, steps: int | None) -> int:
    from dataclasses import replace

    from coars_verl.bench.learning import PRESETS, run_bench

    preset = PRESETS["demo"]
    if steps:
        preset = replace(preset, steps=steps, eval_every=steps)
    out = artifacts / "demo-learning"
    print(f"learning task: {preset.train_users} training users, {preset.num_candidates} candidates; "
          f"cold start, then CoARS for {preset.steps} steps through main_ppo; outputs in {out}", flush=True)
    summary = run_bench(preset, ["coars"], [0], out)
    curve = summary["runs"]["coars"][0]["curve"]
    before, after = curve[0]["hit_at_1"], curve[-1]["hit_at_1"]
    print(f"\nheld-out Hit@1 (greedy, {preset.test_users} test users): before training {100 * before:.1f} %, "
          f"after {curve[-1]['step']} CoARS steps {100 * after:.1f} %")
    print(f"curve: {out / 'curves.png'}\ntraining log: {out / 'runs' / 'coars-s0' / 'train.log'}")
    print(f"viewer (the run's dialogues and token credit, open in a browser): {viewer_page(out / 'runs' / 'coars-s0')}")
    return 0


def viewer_page(run_dir: Path) -> Path:
    """The viewer page of a training run or an evaluation folder (:mod:`coars_verl.viewer`), written to ``RUN_DIR/viewer.html``."""
    from coars_verl.viewer import build

    return build(run_dir)


def evaluate_demo(run_dir: Path, model: Path, data: Path, args) -> Path:
    """Trained checkpoint vs untrained model vs baselines, on the same few test users."""
    from coars_verl.eval.baselines import main as baselines_main
    from coars_verl.eval.cli import main as eval_main
    from coars_verl.eval.table import main as table_main

    selection = ["--one-per-user", "--max-samples", str(args.eval_dialogues), "--max-users", str(args.eval_users)]
    dialogue = ["--max-turns", "3", "--max-tokens", "32", "--no-progress"]
    evaluations = run_dir / "eval"
    checkpoint = run_dir / "checkpoints" / f"global_step_{args.steps}"
    print(f"\nevaluating on {args.eval_dialogues} test dialogues and {args.eval_users} test users (greedy)")
    for label, path, out in ((f"CoARS, {args.steps} steps", checkpoint, "trained"), ("untrained", model, "untrained")):
        code = eval_main(["--model", str(path), "--data", str(data), "--out", str(evaluations / out), "--label", label, *selection, *dialogue])
        if code != 0:
            raise SystemExit(f"evaluation of {path} failed with exit code {code}")
    baselines_main(["--data", str(data), "--out", str(evaluations / "baselines"), *selection])
    table = evaluations / "table.md"
    print()
    table_main([str(evaluations / "trained"), str(evaluations / "untrained"), str(evaluations / "baselines" / "random_expected.json"),
                str(evaluations / "baselines" / "popularity.json"), "--out", str(table)])
    return table


if __name__ == "__main__":
    sys.exit(main())
