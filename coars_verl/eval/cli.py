"""``python -m coars_verl.eval``: evaluate a model or verl checkpoint on a prepared test set.

Examples::

    # CPU, 20 dialogues (each user's last window) and 10 users, results in runs/eval/zero-shot
    python -m coars_verl.eval --model artifacts/models/tiny-primed --data artifacts/data/movielens-100k \\
        --out runs/eval/zero-shot --one-per-user --max-samples 20 --max-users 10

    # the Reflexion-style baseline: the same model, each user's validation dialogue shown as memory
    python -m coars_verl.eval --model artifacts/models/tiny-primed --data artifacts/data/movielens-100k \
        --out runs/eval/memory --one-per-user --max-samples 20 --tasks dialogue --memory-from-split valid

    # a verl checkpoint (merged with verl's model merger into a cache folder first), vLLM on GPU
    python -m coars_verl.eval --model checkpoints/coars/global_step_100/actor --data data/ml-100k \\
        --out runs/eval/coars-step100 --backend vllm --one-per-user

A killed run continues where it stopped when started again with the same ``--out`` and options.
Outputs in ``--out``: ``results.json``, ``results.md``, per-sample ``dialogue.jsonl`` /
``user_sim.jsonl`` and ``run.json`` (the options).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from coars_verl.agent_loop_config import AgentLoopConfig
from coars_verl.dialogue.state import DialogueConfig
from coars_verl.dialogue.prompts import load_prompt_overrides
from coars_verl.distill.contexts import DEFAULT_MEMORY_K, user_only_source_names
from coars_verl.eval.backends import BACKENDS, BackendUnavailable
from coars_verl.eval.evaluate import TASKS, EvalOptions, evaluate
from coars_verl.eval.memory_baseline import MemorySetting
from coars_verl.eval.report import markdown_single
from coars_verl.eval.store import OptionsMismatch



def _prompt_overrides(path: Optional[str]) -> dict[str, str]:
    if not path:
        return {}
    try:
        return load_prompt_overrides(path)
    except ValueError as err:
        raise SystemExit(f"--prompts: {err}") from err


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m coars_verl.eval",
        description="Evaluate a CoARS model: dialogue Hit@1 / ValidRatio / turns and user-simulation P/R/F1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="Hugging Face model folder, or verl checkpoint (global_step_N or global_step_N/actor)")
    p.add_argument("--data", required=True, help="folder prepared by data_prep (test.parquet, user_sim_test.parquet, ...)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--split", default="test", help="which split: <split>.parquet and user_sim_<split>.parquet")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--label", default=None, help="name of this result in tables and plots (default: from the model path)")
    sel = p.add_argument_group("sample selection")
    sel.add_argument("--max-samples", type=int, default=None, help="first N dialogue samples (after --one-per-user)")
    sel.add_argument("--one-per-user", action="store_true", help="each user's last window only (LLaRA style)")
    sel.add_argument("--max-users", type=int, default=None, help="first N user-simulation users")
    dia = p.add_argument_group("dialogue (as in training: coars.dialogue.*, coars.prompts.*)")
    dia.add_argument("--max-turns", type=int, default=DialogueConfig.max_turns)
    dia.add_argument("--numbered-candidates", action=argparse.BooleanOptionalAction, default=DialogueConfig.numbered_candidates)
    dia.add_argument("--max-reason-chars", type=int, default=DialogueConfig.max_reason_chars)
    dia.add_argument("--prompts", default=None, help="JSON or YAML file of prompt template overrides (coars.prompts.*)")
    dia.add_argument("--max-tokens", type=int, default=AgentLoopConfig.max_tokens_per_turn, help="tokens per answer (coars.agent_loop.max_tokens_per_turn)")
    dia.add_argument("--response-budget", type=int, default=None, help="tokens a role may accumulate (rollout.response_length); default unlimited")
    dia.add_argument("--chat-template-kwargs", default=None, help="JSON object passed to apply_chat_template (data.apply_chat_template_kwargs)")
    mem = p.add_argument_group("Reflexion-style baseline (AFL-style memory in the prompt, no training)")
    mem.add_argument("--memory-from-split", default=None, metavar="SPLIT",
                     help="play each test user's last window of SPLIT (e.g. valid) with this model and show that dialogue to the recommender")
    mem.add_argument("--memory-file", default=None, help="or show the dialogues of a memory saved by training (coars_memory.json)")
    mem.add_argument("--memory-sources", nargs="+", choices=user_only_source_names(), default=["memory"],
                     help="memory: the user's own dialogues; neighbor: those of users whose histories overlap; the first that has one")
    mem.add_argument("--memory-k", type=int, default=DEFAULT_MEMORY_K, help="dialogues (memory) or users (neighbor) shown")
    gen = p.add_argument_group("generation")
    gen.add_argument("--backend", choices=BACKENDS, default="auto", help="auto: vllm if importable and CUDA is available, else hf")
    gen.add_argument("--dtype", default=None, help="model dtype (default: float32 for hf, auto for vllm)")
    gen.add_argument("--device", default="auto", help="hf backend device: auto, cpu, cuda, cuda:1, ...")
    gen.add_argument("--batch-size", type=int, default=None, help="dialogues (or user-sim questions) per batch; default 8 (hf), 256 (vllm)")
    gen.add_argument("--vllm-kwargs", default=None, help='JSON object for vllm.LLM, e.g. \'{"gpu_memory_utilization": 0.8}\'')
    gen.add_argument("--merge-cache", default=None, help="where merged verl checkpoints go (default $COARS_VERL_MERGE_CACHE or ~/.cache/coars_verl/merged)")
    run = p.add_argument_group("run")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (also: COARS_NO_PROGRESS=1)")
    run.add_argument("--stop-after-batches", type=int, default=None, help=argparse.SUPPRESS)  # debugging / tests: simulate a kill
    return p


def options_from_args(args: argparse.Namespace) -> EvalOptions:
    return EvalOptions(
        model=args.model,
        data=args.data,
        split=args.split,
        tasks=tuple(dict.fromkeys(args.tasks)),
        max_samples=args.max_samples,
        one_per_user=args.one_per_user,
        max_users=args.max_users,
        max_turns=args.max_turns,
        numbered_candidates=args.numbered_candidates,
        max_reason_chars=args.max_reason_chars,
        prompts=_prompt_overrides(args.prompts),
        max_tokens=args.max_tokens,
        response_budget=args.response_budget,
        backend=args.backend,
        dtype=args.dtype,
        device=args.device,
        batch_size=args.batch_size,
        chat_template_kwargs=json.loads(args.chat_template_kwargs) if args.chat_template_kwargs else {},
        vllm_kwargs=json.loads(args.vllm_kwargs) if args.vllm_kwargs else {},
        merge_cache=args.merge_cache,
        label=args.label,
        memory=MemorySetting(split=args.memory_from_split, file=args.memory_file,
                             sources=tuple(dict.fromkeys(args.memory_sources)), k=args.memory_k),
    )


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        result = evaluate(options, args.out, stop_after_batches=args.stop_after_batches, progress=not args.no_progress)
    except OptionsMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, BackendUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_single(result))
    if not result.get("complete", True):
        print(f"stopped early; run the same command again to continue ({args.out})", file=sys.stderr)
        return 3
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
