"""Build a tiny random causal LM plus a byte-level BPE tokenizer with a ChatML chat template.

Everything is made locally (no network): the tokenizer is trained with ``tokenizers`` on a small
built-in corpus shaped like our dialogues, the model is a randomly initialised ``Qwen2ForCausalLM``
(or ``LlamaForCausalLM``). The result is an ordinary Hugging Face folder::

    python -m coars_verl.models.tiny --out /tmp/tiny-qwen2
    AutoTokenizer.from_pretrained("/tmp/tiny-qwen2"); AutoModelForCausalLM.from_pretrained("/tmp/tiny-qwen2")

The same options always give byte-identical files (for the same library versions). Tests that need a
model should use :func:`cached_tiny_model`, which builds once per cache folder and options.
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

from coars_verl.models._build import (
    BuildResult,
    atomic_build,
    count_params_from_safetensors,
    make_marker,
    timed,
)

BUILDER = "coars_verl.models.tiny"
FORMAT_VERSION = 1

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)
"""Special tokens, in id order: ``<|endoftext|>`` = 0 (pad), ``<|im_start|>`` = 1, ``<|im_end|>`` = 2 (eos)."""

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{- message['content'] }}"
    "{%- elif message['content'] is not none -%}"
    "{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}{{- part['text'] }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' }}{%- endif -%}"
)
"""ChatML as in Qwen2 (without Qwen's default system message): every message is
``<|im_start|>{role}\\n{content}<|im_end|>\\n``; ``add_generation_prompt`` appends
``<|im_start|>assistant\\n``. Content may be a string or a list of ``{"type": "text", "text": ...}`` parts."""

ARCHS = ("qwen2", "llama")

DEFAULTS: dict[str, Any] = {
    "arch": "qwen2",
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": None,  # 2 * hidden_size
    "vocab_size": 1024,
    "max_position_embeddings": 4096,
    "seed": 0,
    "dtype": "float32",
}

# --------------------------------------------------------------------------------------------
# Built-in training corpus for the tokenizer (fixed; independent of the model seed).

_ADJECTIVES = (
    "Silent Golden Broken Hidden Lost Last First Dark Bright Wild Little Secret Endless Frozen Electric "
    "Crimson Midnight Lonely Eternal Sweet Bitter Distant Ancient Modern Velvet Paper Iron Glass Summer "
    "Winter Autumn Spring Northern Southern Western Eastern Royal Quiet Loud Happy Strange Fast Slow Blue "
    "Red Green Black White Silver Brave Gentle Savage Perfect Final Second Hollow Burning Falling Rising"
).split()
_NOUNS = (
    "Heart River City Night Dream Road Sky Garden Kingdom Empire Shadow Light Fire Storm Ocean Mountain "
    "Forest Island Star Moon Sun Machine Letter Song Story Game Journey Station Window Mirror House Bridge "
    "Castle Planet Signal Memory Promise Secret Horizon Harbor Valley Desert Engine Circus Hotel Library "
    "Detective Captain Doctor Pilot Soldier Queen King Witch Ghost Robot Dragon Hunter Stranger Family "
    "Brothers Sisters Friends Lovers Heroes Thieves Angels Wolves Tigers Birds Roses Diamonds Echoes Waves"
).split()
_FIRST = (
    "Anna Ben Clara David Emma Felix Grace Henry Iris Jack Kate Leo Maria Noah Olivia Paul Rosa Sam Tara "
    "Victor Wendy Yuki Zoe Omar Priya Lucas Sofia Mateo Hannah Kenji"
).split()
_LAST = (
    "Smith Johnson Brown Miller Davis Garcia Wilson Moore Taylor Anderson Thomas Martin Lee Walker Young "
    "King Wright Scott Green Baker Adams Nelson Carter Mitchell Turner Parker Collins Stewart Morris Rivera"
).split()
_GENRES = (
    "drama comedy thriller horror romance documentary animation action adventure fantasy mystery science "
    "fiction musical western crime war history biography family sport jazz rock pop classical electronic "
    "folk country metal blues soul indie"
).split()
_VERBS = (
    "liked enjoyed loved watched listened finished rated skipped disliked remembered recommended "
    "preferred chose picked rejected accepted"
).split()
_REASONS = (
    "it matches the user's taste for {genre} with a {adj} mood",
    "the user enjoyed {title} and this one is similar in style",
    "the history shows many {genre} items, so this candidate fits",
    "it was released in {year} like most of the items the user {verb}",
    "the user {verb} several works by {artist}",
    "this item is too different from the {genre} titles in my history",
    "I already {verb} something like it and want a change",
    "its story about a {noun_l} sounds exciting to me",
    "the candidate list has no better {genre} option",
    "I prefer {genre} over {genre2} these days",
)
_PROSE = (
    "You are a recommender agent talking with a user. Each turn, recommend exactly one item from the "
    "candidate list that the user is most likely to pick next. Never repeat an item the user already "
    "rejected. Answer in exactly this format: Reason: <one sentence> Item: <exact title from the candidates>",
    "You are a user talking with a recommender agent. Judge each recommended item by your own history. "
    "Say yes only if it is the item you would pick next from the candidate list. Answer in exactly this "
    "format: Reason: <one sentence> Decision: yes or no",
    "The user has interacted with these items, oldest first. Candidates are listed below. Recommend one "
    "candidate. The recommender now suggests an item. Its reason is given. Would you pick it?",
    "Your answer was not accepted: the title is not in the candidate list. This turn is lost. It counts "
    "as a rejection. The user rejected the item. User's reason follows. Recommend another candidate.",
    "What is the capital of France? The capital of France is Paris. How many days are in a week? There "
    "are 7 days in a week. Please think step by step, then answer the question briefly and clearly.",
    'JSON: {"user_id": 42, "items": [101, 202, 303], "score": 0.875, "ok": true, "note": null}',
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 42 100 365 1999 2024 3.14 -7 +12 50% $19.99 #1 @user a_b c-d e/f",
    "Punctuation: . , ; : ! ? ' \" ( ) [ ] { } < > - _ / \\ | @ # $ % ^ & * + = ~ ` ... -- \n\t",
)


def _title(rng: random.Random) -> str:
    form = rng.randrange(5)
    if form == 0:
        return f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    if form == 1:
        return f"{rng.choice(_NOUNS)} of the {rng.choice(_NOUNS)}"
    if form == 2:
        return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} ({rng.randrange(1950, 2025)})"
    if form == 3:
        return f"{rng.choice(_NOUNS)} {rng.randrange(2, 5)}: {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"


def _reason(rng: random.Random) -> str:
    text = rng.choice(_REASONS).format(
        genre=rng.choice(_GENRES),
        genre2=rng.choice(_GENRES),
        adj=rng.choice(_ADJECTIVES).lower(),
        title=_title(rng),
        year=rng.randrange(1950, 2025),
        verb=rng.choice(_VERBS),
        artist=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
        noun_l=rng.choice(_NOUNS).lower(),
    )
    return text[0].upper() + text[1:] + "."


def tokenizer_corpus(num_dialogues: int = 400) -> list[str]:
    """The fixed corpus the tokenizer is trained on: dialogue-like snippets plus a little prose."""
    rng = random.Random(20240601)
    docs = list(_PROSE)
    docs.append(" ".join(_ADJECTIVES + _NOUNS + _FIRST + _LAST + _GENRES + _VERBS))
    for _ in range(num_dialogues):
        history = [_title(rng) for _ in range(rng.randrange(2, 6))]
        candidates = [_title(rng) for _ in range(rng.randrange(3, 7))]
        lines = ["The user has interacted with these items, oldest first:"]
        lines += [f"- {t}" for t in history]
        lines += ["", "Candidates:"]
        lines += [f"{i}. {t}" for i, t in enumerate(candidates, start=1)]
        pick = rng.choice(candidates)
        lines += ["", f"Reason: {_reason(rng)}", f"Item: {pick}"]
        lines += [f"Reason: {_reason(rng)}", f"Decision: {rng.choice(['yes', 'no'])}"]
        artist = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        lines.append(
            f"I {rng.choice(_VERBS)} {rng.choice(history)} by {artist}, a {rng.choice(_GENRES)} "
            f"{rng.choice(['movie', 'album', 'song', 'book', 'show'])} rated {rng.randrange(1, 6)}/5."
        )
        # ChatML-like framing, so the role names become single tokens.
        docs.append("system\nYou are a recommender.\nuser\n" + "\n".join(lines[:-3]) + "\nassistant\n")
        docs.append("\n".join(lines))
    return docs


# --------------------------------------------------------------------------------------------


def _normalize_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"build_tiny_model: unknown option(s) {unknown}; expected some of {sorted(DEFAULTS)}")
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in options.items() if v is not None})
    if opts["intermediate_size"] is None:
        opts["intermediate_size"] = 2 * int(opts["hidden_size"])
    for key in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "seed"):
        opts[key] = int(opts[key])
    if opts["arch"] not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {opts['arch']!r}")
    if opts["dtype"] not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {opts['dtype']!r}")
    if opts["hidden_size"] % opts["num_heads"] or opts["num_heads"] % opts["num_kv_heads"]:
        raise ValueError("hidden_size must be divisible by num_heads, and num_heads by num_kv_heads")
    if opts["vocab_size"] < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (bytes + special tokens)")
    return opts


# Qwen2's pre-tokenisation regex (transformers' Qwen2Tokenizer), digits split one by one.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _qwen2_pipeline(tok) -> None:
    """Set Qwen2's normaliser / pre-tokeniser / decoder on a ``tokenizers.Tokenizer``.

    transformers 5 loads every ``qwen2`` checkpoint's tokenizer with ``Qwen2Tokenizer``, which rebuilds
    exactly this pipeline around the saved vocab and merges (whatever tokenizer.json says). Training
    and saving with the same pipeline keeps tokenizer.json, ``tokenizers`` and ``AutoTokenizer`` in
    agreement for both archs. Consequence: text is NFC-normalised, so decode(encode(s)) == NFC(s).
    """
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()


def train_tokenizer(vocab_size: int):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on :func:`tokenizer_corpus` (deterministic)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(
        models.BPE(
            dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
            fuse_unk=False, byte_fallback=False,
        )
    )
    _qwen2_pipeline(tok)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    # The trainer resets these two to null; Qwen2Tokenizer uses "" (same behaviour). Match it so that
    # tokenizer.json is exactly what AutoTokenizer rebuilds.
    spec = json.loads(tok.to_str())
    spec["model"]["continuing_subword_prefix"] = ""
    spec["model"]["end_of_word_suffix"] = ""
    return Tokenizer.from_str(json.dumps(spec))


def make_tokenizer(vocab_size: int, model_max_length: int = 4096):
    """The tiny model's ``PreTrainedTokenizerFast`` (ChatML template, eos ``<|im_end|>``, pad ``<|endoftext|>``)."""
    from transformers import PreTrainedTokenizerFast

    backend = train_tokenizer(vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )
    return tokenizer


def make_config(opts: dict[str, Any], pad_id: int, eos_id: int):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=opts["vocab_size"],
        hidden_size=opts["hidden_size"],
        intermediate_size=opts["intermediate_size"],
        num_hidden_layers=opts["num_layers"],
        num_attention_heads=opts["num_heads"],
        num_key_value_heads=opts["num_kv_heads"],
        max_position_embeddings=opts["max_position_embeddings"],
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        use_cache=True,
        attn_implementation="sdpa",
        dtype=opts["dtype"],
    )
    if opts["arch"] == "qwen2":
        return Qwen2Config(use_sliding_window=False, **common)
    return LlamaConfig(attention_bias=False, mlp_bias=False, **common)


def _build_into(folder: Path, opts: dict[str, Any]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = make_tokenizer(opts["vocab_size"], model_max_length=opts["max_position_embeddings"])
    if len(tokenizer) > opts["vocab_size"]:  # cannot happen: the trainer stops at vocab_size
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens > vocab_size {opts['vocab_size']}")
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    config = make_config(opts, pad_id=pad_id, eos_id=eos_id)

    dtype = getattr(torch, opts["dtype"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts["seed"])
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = model.to(dtype).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False,
    )
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    _pin_attn_implementation(folder / "config.json", "sdpa")


def _pin_attn_implementation(config_path: Path, impl: str) -> None:
    """transformers 5 does not serialise ``attn_implementation``; writing the key makes
    ``from_pretrained`` default to ``impl`` (never flash-attention) while callers may still override it."""
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["attn_implementation"] = impl
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def build_tiny_model_result(out_dir: str | os.PathLike, force: bool = False, **options: Any) -> BuildResult:
    """Like :func:`build_tiny_model`, returning the :class:`BuildResult` (for the summary line)."""
    opts = _normalize_options(options)
    marker = make_marker(BUILDER, FORMAT_VERSION, opts)
    path, built, seconds = timed(lambda: atomic_build(out_dir, marker, lambda tmp: _build_into(tmp, opts), force))
    return BuildResult(
        path=path,
        built=built,
        seconds=seconds,
        num_params=count_params_from_safetensors(path),
        vocab_size=opts["vocab_size"],
        kind=f"tiny {opts['arch']}",
    )


def build_tiny_model(out_dir: str | os.PathLike, force: bool = False, **options: Any) -> Path:
    """Build the tiny model + tokenizer into ``out_dir`` (skipped if already built with the same options).

    Options (all optional): ``arch`` ("qwen2" | "llama"), ``hidden_size``, ``num_layers``, ``num_heads``,
    ``num_kv_heads``, ``intermediate_size``, ``vocab_size``, ``max_position_embeddings``, ``seed``, ``dtype``.
    Returns the folder's absolute path.

    The built-in corpus yields at most ~1.4k BPE tokens: with a larger ``vocab_size`` the tokenizer
    stays at that size and the embedding has unused rows (as Qwen's padded vocabularies do).
    """
    return build_tiny_model_result(out_dir, force=force, **options).path


def default_cache_dir() -> Path:
    env = os.environ.get("COARS_VERL_MODEL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "coars_verl" / "models"


def cached_tiny_model(cache_dir: str | os.PathLike | None = None, **options: Any) -> Path:
    """Build (once) and return a tiny model folder under ``cache_dir`` keyed by the options.

    Meant for test fixtures, e.g.::

        @pytest.fixture(scope="session")
        def tiny_model_path(tmp_path_factory):
            return cached_tiny_model(tmp_path_factory.getbasetemp() / "models")

    ``cache_dir`` defaults to ``$COARS_VERL_MODEL_CACHE`` or ``~/.cache/coars_verl/models``.
    Safe to call from several processes at once.
    """
    opts = _normalize_options(options)
    key = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return build_tiny_model(root / f"tiny-{opts['arch']}-{key}", **opts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coars_verl.models.tiny", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--arch", choices=ARCHS, default=DEFAULTS["arch"])
    p.add_argument("--hidden-size", type=int, default=DEFAULTS["hidden_size"])
    p.add_argument("--num-layers", type=int, default=DEFAULTS["num_layers"])
    p.add_argument("--num-heads", type=int, default=DEFAULTS["num_heads"])
    p.add_argument("--num-kv-heads", type=int, default=DEFAULTS["num_kv_heads"])
    p.add_argument("--intermediate-size", type=int, default=None, help="default: 2 * hidden size")
    p.add_argument("--vocab-size", type=int, default=DEFAULTS["vocab_size"])
    p.add_argument("--max-position-embeddings", type=int, default=DEFAULTS["max_position_embeddings"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=DEFAULTS["dtype"])
    p.add_argument("--force", action="store_true", help="rebuild even if the folder holds the same build")
    a = p.parse_args(argv)
    result = build_tiny_model_result(
        a.out,
        force=a.force,
        arch=a.arch,
        hidden_size=a.hidden_size,
        num_layers=a.num_layers,
        num_heads=a.num_heads,
        num_kv_heads=a.num_kv_heads,
        intermediate_size=a.intermediate_size,
        vocab_size=a.vocab_size,
        max_position_embeddings=a.max_position_embeddings,
        seed=a.seed,
        dtype=a.dtype,
    )
    print(result.path)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
