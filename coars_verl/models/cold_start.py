"""The start model of the learning task: a tiny model given a short cold-start fine-tune on training users.

RL from a model that only knows the answer formats does not find even a one-attribute rule in a
CPU budget, so the learning benchmark starts where RecOne-style recipes and verl's own
arithmetic test start: from a supervised cold start on training users
(:mod:`coars_verl.datasets.learning_task`; never the valid or test users). The demonstrations
are dialogues played by a scripted policy with the real dialogue code and role prompts:

* the recommender first says which genre and noun it thinks the user likes, then names the item.
  It imitates a biased logged policy: with probability ``logged_hit_rate`` it names the target,
  otherwise it recommends the user's most recent item again (repeat bias; never a valid
  candidate, so the turn is lost and the policy tries again, with the same odds), or, with
  ``logged_valid_mistake_rate``, a candidate sharing one half with the target (which the user rejects);
* the user agent says yes exactly to the target; its reason names what it likes (on a no: the
  preferred genre or noun of the half of the item that was wrong), so its feedback helps the
  recommender's next turn.

The model learns the formats, the user agent's part and the noun; it is well below the task's
ceiling because greedy decoding follows the logged policy's majority (the repeat), while sampling
finds the target often enough for RL to have a signal. The learning rate decays to 0, so the
formats are sharp at the end: RL from a noisy start collapsed in our runs. Deterministic for the same
options and data::

    python -m coars_verl.models.cold_start --data DATA_DIR --out DIR [--steps 500] [--prompts recipes/prompts/compact.yaml]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from coars_verl.constants import ROLE_RECOMMENDER
from coars_verl.dialogue.prompts import load_prompt_overrides
from coars_verl.models._build import BuildResult, atomic_build, count_params_from_safetensors, make_marker, timed
from coars_verl.models._sft import Example, encode_examples, supervised_finetune
from coars_verl.models.tiny import build_tiny_model

BUILDER = "coars_verl.models.cold_start"
FORMAT_VERSION = 2
DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "num_layers": 2,
    "steps": 500,
    "batch_size": 32,
    "lr": 2e-3,
    "seed": 0,
    "logged_hit_rate": 0.3,
    "logged_valid_mistake_rate": 0.0,
    "max_turns": 3,
}
SIM_NEGATIVES = 3
"""Items judged beside the target in a user-simulation question (as data_prep's default)."""


def recommender_answer(item: str) -> str:
    """The reason spells the two halves of the item before naming it (a short chain of thought)."""
    genre, noun = item.split(" ", 1)
    return f"Reason: you like {genre} and {noun}.\nItem: {item}"


def _user_answer(item: str, target: str) -> str:
    genre, noun = target.split(" ", 1)
    if item == target:
        return f"Reason: I like {genre} and {noun}.\nDecision: yes"
    item_genre = item.split(" ", 1)[0]
    liked = genre if item_genre != genre else noun
    return f"Reason: I like {liked} more.\nDecision: no"


def logged_bias_item(history_titles) -> str:
    """The logged policy's mistake: the user's most recent item again (repeat bias). It is never
    a valid candidate (candidates are items the user has not interacted with)."""
    return list(history_titles)[-1]


def demonstrations(extra_infos, config, logged_hit_rate: float, seed: int, valid_mistake_rate: float = 0.0) -> list[Example]:
    """(messages, answer) pairs: one scripted dialogue per row, and two user-simulation questions
    (the target and a candidate sharing one of its halves) in the evaluation's format.

    ``valid_mistake_rate``: the share of the logged policy's mistakes that name a candidate sharing
    one half with the target (not yet recommended in the dialogue) instead of the repeat, so that
    the user agent's demonstrations include rejections inside dialogues."""
    from coars_verl.dialogue.state import Dialogue
    from coars_verl.eval.runner import user_sim_question

    rng = random.Random(seed)
    examples: list[Example] = []
    for extra_info in extra_infos:
        dialogue = Dialogue.from_extra_info(extra_info, config)
        sample = dialogue.sample
        target, biased = sample.target_title, logged_bias_item(sample.history_titles)
        genre, noun = target.split(" ", 1)
        near = [t for t in sample.candidate_titles if t != target and (t.startswith(genre + " ") or t.endswith(" " + noun))]
        context: dict[str, list[dict[str, str]]] = {}
        while not dialogue.done:
            role = dialogue.next_role()
            seen = context.setdefault(role, [])
            seen.extend(dialogue.pending_messages(role))
            if role == ROLE_RECOMMENDER:
                item = target if rng.random() < logged_hit_rate else biased
                if item != target and valid_mistake_rate > 0 and rng.random() < valid_mistake_rate:
                    tried = {turn.rec_item_title for turn in dialogue.transcript.turns}
                    item = rng.choice([t for t in near if t not in tried] or [biased])
                answer = recommender_answer(item)
            else:
                answer = _user_answer(dialogue.transcript.turns[-1].rec_item_title, target)
            examples.append((list(seen), answer))
            seen.append({"role": "assistant", "content": answer})
            dialogue.submit(role, answer)
        judged = [target] + rng.sample(near, min(SIM_NEGATIVES, len(near)))
        shown = rng.sample(judged, len(judged))
        for item in judged[:2]:
            examples.append((user_sim_question(sample.history_titles, shown, item, config), _user_answer(item, target)))
    return examples


def _train_file(data_dir: Path) -> Path:
    path = data_dir / "train.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training users; prepare the task with python data_prep/learning_task.py --out {data_dir}")
    return path


def _build_into(folder: Path, opts: Mapping[str, Any], data_dir: Path, prompts: Mapping[str, str]) -> None:
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coars_verl.dialogue.prompts import PromptTemplates
    from coars_verl.dialogue.state import DialogueConfig

    base = build_tiny_model(folder.parent / f".{folder.name}.base", hidden_size=opts["hidden_size"], num_layers=opts["num_layers"], seed=opts["seed"])
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = DialogueConfig(max_turns=opts["max_turns"], templates=PromptTemplates.from_overrides(prompts))
    extra_infos = pq.read_table(_train_file(data_dir), columns=["extra_info"]).column("extra_info").to_pylist()
    examples = demonstrations(extra_infos, config, opts["logged_hit_rate"], opts["seed"], opts["logged_valid_mistake_rate"])
    rows = encode_examples(tokenizer, examples)
    loss = supervised_finetune(model, rows, steps=opts["steps"], batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"],
                               pad_token_id=tokenizer.pad_token_id, decay_to_zero=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "cold_start.json").write_text(json.dumps({"final_loss": loss, "examples": len(rows), **opts}, indent=2, sort_keys=True) + "\n")
    config_path = folder / "config.json"
    model_config = json.loads(config_path.read_text())
    model_config["attn_implementation"] = "sdpa"
    config_path.write_text(json.dumps(model_config, indent=2, sort_keys=True) + "\n")


def cold_start_options(**options: Any) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"build_cold_start_model: unknown option(s) {unknown}; expected some of {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    for name in ("logged_hit_rate", "logged_valid_mistake_rate"):
        if not 0.0 <= float(opts[name]) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {opts[name]}")
    return opts


def build_cold_start_model_result(
    out_dir: str | os.PathLike, data_dir: str | os.PathLike, prompts: Optional[Mapping[str, str]] = None, force: bool = False, **options: Any
) -> BuildResult:
    opts = cold_start_options(**options)
    data_dir = Path(data_dir).expanduser().absolute()
    prompts = {str(k): str(v) for k, v in (prompts or {}).items()}
    data_digest = hashlib.sha256(_train_file(data_dir).read_bytes()).hexdigest()
    marker = make_marker(BUILDER, FORMAT_VERSION, opts, train_sha256=data_digest, prompts=prompts)
    out = Path(out_dir).expanduser().absolute()
    path, built, seconds = timed(lambda: atomic_build(out, marker, lambda tmp: _build_into(tmp, opts, data_dir, prompts), force))
    vocab = int(json.loads((path / "config.json").read_text())["vocab_size"])
    return BuildResult(path=path, built=built, seconds=seconds, num_params=count_params_from_safetensors(path),
                       vocab_size=vocab, kind=f"tiny, cold start on the learning task ({opts['steps']} steps)")


def build_cold_start_model(out_dir, data_dir, prompts=None, force: bool = False, **options: Any) -> Path:
    return build_cold_start_model_result(out_dir, data_dir, prompts=prompts, force=force, **options).path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.models.cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a learning-task folder written by data_prep/learning_task.py")
    parser.add_argument("--out", required=True)
    parser.add_argument("--prompts", help="YAML or JSON file of prompt templates (coars.prompts.*), as the recipe uses")
    for name, value in DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), help=f"default {value}")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    prompts = load_prompt_overrides(args.prompts) if args.prompts else {}
    result = build_cold_start_model_result(args.out, args.data, prompts=prompts, force=args.force,
                                           **{name: getattr(args, name) for name in DEFAULTS})
    print(result.path)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
