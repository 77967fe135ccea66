"""The tiny offline model: build, load, tokenizer round trip, chat template, generate, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig  # noqa: E402

from coars_verl.models import tiny  # noqa: E402
from coars_verl.models._build import MARKER_NAME, read_marker  # noqa: E402
from coars_verl.models.tiny import (  # noqa: E402
    IM_END,
    IM_START,
    PAD_TOKEN,
    build_tiny_model,
    cached_tiny_model,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, vocab_size=512)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2")


@pytest.fixture(scope="session")
def tok(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="session")
def model(tiny_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval()


# ------------------------------------------------------------------------------------------ build


def test_folder_holds_a_complete_hf_checkpoint(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", MARKER_NAME} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)
    marker = read_marker(tiny_dir)
    assert marker["builder"] == "coars_verl.models.tiny"
    assert marker["options"]["arch"] == "qwen2" and marker["options"]["seed"] == 0
    assert set(marker["files"]) == names - {MARKER_NAME}
    assert not list(tiny_dir.parent.glob(".*tmp-*")), "temporary build folder left behind"


def test_config_matches_requested_tiny_shape(tiny_dir, model):
    cfg = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert cfg.intermediate_size == 128 and cfg.max_position_embeddings == 4096 and cfg.vocab_size == 1024
    assert cfg.tie_word_embeddings is True
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.dtype == torch.float32
    assert cfg._attn_implementation in ("sdpa", "eager")
    assert json.loads((tiny_dir / "config.json").read_text())["attn_implementation"] == "sdpa"
    # A caller may still choose another implementation.
    assert AutoConfig.from_pretrained(tiny_dir, attn_implementation="eager")._attn_implementation == "eager"


def test_special_token_ids_are_coherent(tiny_dir, tok, model):
    gen = GenerationConfig.from_pretrained(tiny_dir)
    assert tok.eos_token == IM_END and tok.pad_token == PAD_TOKEN and tok.bos_token is None
    assert tok.convert_tokens_to_ids([PAD_TOKEN, IM_START, IM_END]) == [0, 1, 2]
    assert tok.eos_token_id == model.config.eos_token_id == gen.eos_token_id == 2
    assert tok.pad_token_id == model.config.pad_token_id == gen.pad_token_id == 0
    assert model.config.bos_token_id is None and tok.bos_token_id is None
    assert len(tok) == model.config.vocab_size
    # special tokens are single ids and never split
    assert tok(f"a{IM_START}b{IM_END}c")["input_ids"].count(1) == 1
    assert tok(f"a{IM_START}b{IM_END}c")["input_ids"].count(2) == 1


def test_autotokenizer_uses_the_saved_tokenizer_json_unchanged(tiny_dir, tok):
    # transformers 5 loads qwen2 tokenizers with Qwen2Tokenizer, which rebuilds its own pipeline;
    # the saved file must already be that pipeline.
    assert json.loads(tok.backend_tokenizer.to_str()) == json.loads((tiny_dir / "tokenizer.json").read_text())


# ------------------------------------------------------------------------------------------ tokenizer

_ROUND_TRIP_EXAMPLES = [
    "",
    "Reason: The user enjoyed The Silent Heart (1999).\nItem: Golden River",
    "Decision: yes",
    "  leading and trailing  \t\r\n",
    "Ünïcödé façade — naïve café, Straße, ½ ≠ ∞, 日本語のテキスト, 한국어, العربية, emoji 🤖👍🏽🇫🇷",
    "digits 0123456789 3.14159 -42 1e-9 $19.99 100%",
    "odd bytes \x00\x01\x7f \u200b \ufeff",
    f"text with specials {IM_START}user\nhi{IM_END} and {PAD_TOKEN}",
    "x" * 2000,
]


@pytest.mark.parametrize("text", _ROUND_TRIP_EXAMPLES)
def test_round_trip_examples(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert all(0 <= i < len(tok) for i in ids)
    assert tok.decode(ids) == text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_round_trip_any_text(tok, text):
    """Byte-level BPE: any string survives encode/decode up to Unicode NFC (the Qwen2 normaliser)."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id is None or tok.unk_token_id not in ids
    assert tok.decode(ids) == unicodedata.normalize("NFC", text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200).map(lambda s: unicodedata.normalize("NFC", s)))
def test_round_trip_exact_for_nfc_text(tok, text):
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=120))
def test_autotokenizer_agrees_with_plain_tokenizers(tiny_dir, tok, text):
    raw = _raw_tokenizer(tiny_dir)
    assert tok(text, add_special_tokens=False)["input_ids"] == raw.encode(text, add_special_tokens=False).ids


_RAW: dict[Path, Tokenizer] = {}


def _raw_tokenizer(folder: Path) -> Tokenizer:
    if folder not in _RAW:
        _RAW[folder] = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return _RAW[folder]


def test_dialogue_text_compresses(tok):
    """The BPE learned our dialogue vocabulary: common words are single tokens."""
    text = "Reason: The user enjoyed this movie.\nItem: The Silent Heart\nDecision: yes"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(text.encode()) / 2.5


# ------------------------------------------------------------------------------------------ chat


MESSAGES = [
    {"role": "system", "content": "You are a recommender agent."},
    {"role": "user", "content": "Candidates:\n1. Golden River\n2. Dark Sky"},
    {"role": "assistant", "content": "Reason: It fits.\nItem: Golden River"},
    {"role": "user", "content": "Why? 🤔"},
]


def test_chat_template_renders_chatml(tok):
    text = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    expected = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in MESSAGES)
    assert text == expected + "<|im_start|>assistant\n"
    assert tok.apply_chat_template(MESSAGES, add_generation_prompt=False, tokenize=False) == expected


def test_chat_template_tokenizes_to_sensible_ids(tok):
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    ids = list(ids)
    im_start, im_end = tok.convert_tokens_to_ids([IM_START, IM_END])
    assert ids.count(im_start) == len(MESSAGES) + 1 and ids.count(im_end) == len(MESSAGES)
    assert ids[0] == im_start
    last_start = len(ids) - 1 - ids[::-1].index(im_start)
    assert tok.decode(ids[last_start + 1:]) == "assistant\n"
    assert len(ids) - last_start <= 3  # "assistant" and "\n" are learned tokens
    rendered = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert ids == tok(rendered, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == rendered


def test_chat_template_accepts_text_parts(tok):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}]
    assert tok.apply_chat_template(parts, tokenize=False) == "<|im_start|>user\nHello there<|im_end|>\n"


# ------------------------------------------------------------------------------------------ model


def test_generate_and_forward(tok, model):
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "Recommend a movie."}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        logits = model(**enc).logits
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
        out2 = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert logits.shape == (1, enc["input_ids"].shape[1], 1024)
    assert torch.isfinite(logits).all()
    n = enc["input_ids"].shape[1]
    assert out.shape[0] == 1 and n < out.shape[1] <= n + 8
    assert torch.equal(out, out2)
    tok.decode(out[0, n:])  # decodes without error


def test_batched_generate_with_padding(tok, model):
    prompts = ["Decision: yes", "Reason: a much longer prompt than the other one. Item:"]
    tok.padding_side = "left"
    try:
        enc = tok(prompts, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = "right"
    assert (enc["input_ids"][0] == tok.pad_token_id).any()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2


# ------------------------------------------------------------------------------------------ determinism / cache


def test_same_options_give_byte_identical_files(tmp_path, tiny_dir):
    again = build_tiny_model(tmp_path / "again")
    assert _files(again) == _files(tiny_dir)


def test_cli_in_a_fresh_process_gives_the_same_files(tmp_path, tiny_dir):
    """Also checks determinism across processes (Rust hash seeds, Python hash randomisation)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONHASHSEED="random")
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "coars_verl.models.tiny", "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == str(out)
    assert "params" in lines[1] and "vocab 1024" in lines[1] and "built in" in lines[1]
    assert _files(out) == _files(tiny_dir)


def test_other_seed_changes_weights_not_tokenizer(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=0, **SMALL)
    b = build_tiny_model(tmp_path / "b", seed=1, **SMALL)
    fa, fb = _files(a), _files(b)
    assert fa["tokenizer.json"] == fb["tokenizer.json"]
    assert fa["model.safetensors"] != fb["model.safetensors"]


def test_idempotent_skip_force_and_repair(tmp_path, capsys):
    out = tmp_path / "m"
    assert tiny.main(["--out", str(out), "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2",
                      "--num-kv-heads", "1", "--vocab-size", "512"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0] == str(out.absolute()) and "built in" in first[1] and "vocab 512" in first[1]
    stamp = (out / "model.safetensors").stat().st_mtime_ns

    tiny.main(["--out", str(out), "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2",
               "--num-kv-heads", "1", "--vocab-size", "512"])
    assert "skipped" in capsys.readouterr().out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp

    tiny.main(["--out", str(out), "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2",
               "--num-kv-heads", "1", "--vocab-size", "512", "--force"])
    assert "skipped" not in capsys.readouterr().out

    (out / "model.safetensors").unlink()  # incomplete folder -> rebuilt
    build_tiny_model(out, **SMALL)
    assert (out / "model.safetensors").is_file()

    build_tiny_model(out, seed=3, **SMALL)  # other options -> rebuilt in place
    assert read_marker(out)["options"]["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_llama_arch(tmp_path):
    out = build_tiny_model(tmp_path / "llama", arch="llama", **SMALL)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.eos_token_id == model.config.eos_token_id == 2 and len(tok) == model.config.vocab_size == 512
    text = "Ünïcödé 🤖 Decision: no"
    assert tok.decode(tok(text)["input_ids"]) == text
    enc = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**enc, max_new_tokens=3, do_sample=False).shape[1] > enc["input_ids"].shape[1]


def test_vocab_larger_than_the_corpus_supports(tmp_path):
    out = build_tiny_model(tmp_path / "big", **dict(SMALL, vocab_size=4096))
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == 4096 and 1024 < len(tok) <= 4096
    enc = tok("Decision: yes", return_tensors="pt")
    assert model.generate(**enc, max_new_tokens=2, do_sample=False).shape[1] >= enc["input_ids"].shape[1] + 1


def test_cached_tiny_model(tmp_path):
    a = cached_tiny_model(tmp_path, **SMALL)
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert cached_tiny_model(tmp_path, **SMALL) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp
    b = cached_tiny_model(tmp_path, seed=5, **SMALL)
    assert b != a and b.parent == a.parent == tmp_path


@pytest.mark.parametrize(
    "bad", [dict(arch="gpt2"), dict(hidden_size=30, num_heads=4), dict(vocab_size=100), dict(colour="red")]
)
def test_bad_options_are_rejected(tmp_path, bad):
    with pytest.raises((ValueError, TypeError)):
        build_tiny_model(tmp_path / "x", **bad)
    assert not (tmp_path / "x").exists()
