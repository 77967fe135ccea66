"""A model primed to the CoARS answer formats, so that RL on CPU has something to learn from.

A randomly initialised model never writes ``Item: ...`` or ``Decision: ...``, and neither does
SmolLM2-135M-Instruct zero-shot (it loops on the candidate titles): every dialogue then gets the same
reward, GRPO sees no variance and the actor never moves. This command takes a base model (the tiny
model of :mod:`coars_verl.models.tiny`, or SmolLM2-135M-Instruct from :mod:`coars_verl.models.smollm2`)
and fine-tunes it briefly (supervised, on CPU) on synthetic dialogues rendered with the real role
prompts of :mod:`coars_verl.dialogue`, with made-up titles:

* the recommender answers ``Reason: <...>\\nItem: <k>`` with a random candidate number k;
* the user agent answers ``Reason: <...>\\nDecision: yes|no`` at random.

So the primed model speaks both formats but learns nothing about real users or items: its choices
are random, its rewards vary, and RL has a signal. Deterministic for the same options::

    python -m coars_verl.models.primed --out /tmp/tiny-primed
    python -m coars_verl.models.primed --base smollm2 --out /tmp/smollm2-primed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from coars_verl.constants import ROLE_RECOMMENDER
from coars_verl.models._build import BuildResult, atomic_build, count_params_from_safetensors, make_marker, timed
from coars_verl.models._sft import encode_examples, supervised_finetune
from coars_verl.models.tiny import _reason, _title, build_tiny_model

BUILDER = "coars_verl.models.primed"
FORMAT_VERSION = 2
COMMON_DEFAULTS: dict[str, Any] = {"num_candidates": 20, "yes_rate": 0.25, "seed": 0}
# A pretrained model needs far fewer, gentler steps than a random one to pick up two answer formats.
BASE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"steps": 200, "batch_size": 8, "lr": 3e-3},
    "smollm2": {"steps": 40, "batch_size": 4, "lr": 2e-5},
}
OPTION_NAMES = frozenset(COMMON_DEFAULTS) | frozenset(BASE_DEFAULTS["tiny"])


def synthetic_examples(num_dialogues: int, num_candidates: int, yes_rate: float, seed: int) -> list[tuple[list[dict], str]]:
    """(messages the agent saw, its answer) for every act of ``num_dialogues`` random dialogues."""
    from coars_verl.dialogue.state import Dialogue, DialogueSample

    rng = random.Random(seed)
    examples: list[tuple[list[dict], str]] = []
    for _ in range(num_dialogues):
        titles = list(dict.fromkeys(_title(rng) for _ in range(num_candidates + 12)))
        candidates, history = titles[:num_candidates], titles[num_candidates : num_candidates + rng.randrange(3, 11)]
        sample = DialogueSample(
            user_id="0", history_titles=tuple(history), candidate_titles=tuple(candidates),
            candidate_item_ids=tuple(str(i) for i in range(len(candidates))),
            target_title=rng.choice(candidates), target_item_id="",
        )
        dialogue = Dialogue(sample)
        seen: dict[str, list[dict]] = {}
        while not dialogue.done:
            role = dialogue.next_role()
            context = seen.setdefault(role, [])
            context.extend(dialogue.pending_messages(role))
            if role == ROLE_RECOMMENDER:
                answer = f"Reason: {_reason(rng)}\nItem: {rng.randrange(1, len(candidates) + 1)}"
            else:
                answer = f"Reason: {_reason(rng)}\nDecision: {'yes' if rng.random() < yes_rate else 'no'}"
            examples.append((list(context), answer))
            context.append({"role": "assistant", "content": answer})
            dialogue.submit(role, answer)
    return examples


def _build_into(folder: Path, opts: dict[str, Any], base: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
    examples = synthetic_examples(opts["steps"] * opts["batch_size"] // 4 + 1, opts["num_candidates"], opts["yes_rate"], opts["seed"])
    rows = encode_examples(tokenizer, examples)
    pad = tokenizer.convert_tokens_to_ids("<|im_end|>") if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    loss = supervised_finetune(model, rows, steps=opts["steps"], batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"], pad_token_id=pad)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "priming.json").write_text(json.dumps({"final_loss": loss, **opts}, indent=2, sort_keys=True) + "\n")
    config = json.loads((folder / "config.json").read_text())
    config["attn_implementation"] = "sdpa"
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def primed_options(base: str = "tiny", **options: Any) -> dict[str, Any]:
    """The full option set of a build: the base's defaults, overridden by the non-None ``options``."""
    if base not in BASE_DEFAULTS:
        raise ValueError(f"build_primed_model: base must be one of {sorted(BASE_DEFAULTS)}, got {base!r}")
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"build_primed_model: unknown option(s) {unknown}; expected some of {sorted(OPTION_NAMES)}")
    return {"base": base, **COMMON_DEFAULTS, **BASE_DEFAULTS[base], **{k: v for k, v in options.items() if v is not None}}


def _build_base(base: str, folder: Path, seed: int) -> Path:
    if base == "tiny":
        return build_tiny_model(folder, seed=seed)
    from coars_verl.models.smollm2 import convert_smollm2

    return convert_smollm2(folder)


def build_primed_model_result(out_dir: str | os.PathLike, force: bool = False, base: str = "tiny", **options: Any) -> BuildResult:
    opts = primed_options(base, **options)
    marker = make_marker(BUILDER, FORMAT_VERSION, opts)
    out = Path(out_dir).expanduser().absolute()

    def build(tmp: Path) -> None:
        _build_into(tmp, opts, _build_base(base, tmp.parent / f".{out.name}.base", opts["seed"]))

    path, built, seconds = timed(lambda: atomic_build(out, marker, build, force))
    vocab = int(json.loads((path / "config.json").read_text())["vocab_size"])
    return BuildResult(path=path, built=built, seconds=seconds, num_params=count_params_from_safetensors(path),
                       vocab_size=vocab, kind=f"{base}, format-primed ({opts['steps']} steps)")


def build_primed_model(out_dir: str | os.PathLike, force: bool = False, base: str = "tiny", **options: Any) -> Path:
    return build_primed_model_result(out_dir, force=force, base=base, **options).path


def cached_primed_model(cache_dir: str | os.PathLike, base: str = "tiny", **options: Any) -> Path:
    """Build once per cache folder and options (for test fixtures)."""
    opts = primed_options(base, **options)
    key = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:12]
    return build_primed_model(Path(cache_dir) / f"{base}-primed-{key}", base=base, **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.models.primed", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--base", choices=sorted(BASE_DEFAULTS), default="tiny", help="model to prime (default: tiny)")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: tiny 200, smollm2 40)")
    parser.add_argument("--batch-size", type=int, help="dialogue acts per step (default: tiny 8, smollm2 4)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate (default: tiny 3e-3, smollm2 2e-5)")
    parser.add_argument("--seed", type=int, default=COMMON_DEFAULTS["seed"])
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    result = build_primed_model_result(args.out, force=args.force, base=args.base, steps=args.steps,
                                       batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    print(result.path)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
