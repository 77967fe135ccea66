"""Model arguments: Hugging Face folders and verl FSDP checkpoints (merged with verl's model merger).

The checkpoint here is written in the layout of verl 0.9.1's FSDPCheckpointManager with one rank
(``fsdp_config.json``, ``model_world_size_1_rank_0.pt``, ``huggingface/`` with config and
tokenizer); no trainer is started.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from coars_verl.eval import checkpoint as ckpt
from coars_verl.eval.cli import main as eval_main
from coars_verl.eval.evaluate import _default_label
from coars_verl.eval.report import load_result


def write_actor_checkpoint(model_path, actor, with_hf_weights=False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    (actor / "huggingface").mkdir(parents=True)
    torch.save(model.state_dict(), actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
    model.config.save_pretrained(actor / "huggingface")
    AutoTokenizer.from_pretrained(model_path).save_pretrained(actor / "huggingface")
    if with_hf_weights:
        model.save_pretrained(actor / "huggingface")
    return model


def test_hf_folder_and_errors(tiny_model_path, tmp_path):
    resolved = ckpt.resolve_model(tiny_model_path)
    assert resolved.source == "hf" and resolved.path == tiny_model_path.resolve()
    with pytest.raises(FileNotFoundError):
        ckpt.resolve_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither"):
        ckpt.resolve_model(tmp_path / "empty")


def test_checkpoint_with_hf_weights_needs_no_merge(tiny_model_path, tmp_path, monkeypatch):
    actor = tmp_path / "run" / "checkpoints" / "global_step_4" / "actor"
    write_actor_checkpoint(tiny_model_path, actor, with_hf_weights=True)
    monkeypatch.setattr(ckpt, "merge_verl_checkpoint", lambda *a: pytest.fail("no merge expected"))
    resolved = ckpt.resolve_model(actor.parent)
    assert resolved.source == "verl_hf" and resolved.path == (actor / "huggingface").resolve()
    assert _default_label(str(actor)) == "run/global_step_4"
    assert _default_label(str(actor.parent)) == "run/global_step_4"


def test_fsdp_shards_are_merged_once_and_evaluated(tiny_model_path, movielens_dir, tmp_path, monkeypatch):
    step = tmp_path / "ckpts" / "global_step_5"
    model = write_actor_checkpoint(tiny_model_path, step / "actor")
    cache = tmp_path / "merged"
    resolved = ckpt.resolve_model(step, merge_cache=cache)  # runs python -m verl.model_merger merge
    assert resolved.source == "verl_merged" and resolved.path.parent == cache.resolve()
    assert (resolved.path / ckpt.MERGE_MARKER).exists()

    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32)
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, model(ids).logits, atol=0.05)  # verl's merger writes bfloat16

    # the second time the merged folder is reused; the evaluation tool takes the checkpoint as its model
    monkeypatch.setattr(ckpt, "merge_verl_checkpoint", lambda *a: pytest.fail("merged twice"))
    assert ckpt.resolve_model(step / "actor", merge_cache=cache).path == resolved.path
    out = tmp_path / "eval"
    code = eval_main(["--model", str(step / "actor"), "--data", str(movielens_dir), "--out", str(out), "--merge-cache", str(cache),
                      "--max-samples", "2", "--max-users", "1", "--max-turns", "1", "--max-tokens", "4", "--backend", "hf", "--no-progress"])
    assert code == 0
    result = load_result(out / "results.json")
    assert result["model"]["source"] == "verl_merged" and result["label"] == "ckpts/global_step_5"
    assert result["metrics"]["recommendation"]["dialogues"] == 2


def test_failed_merge_leaves_nothing(tmp_path, monkeypatch):
    actor = tmp_path / "global_step_1" / "actor"
    (actor / "huggingface").mkdir(parents=True)
    (actor / "fsdp_config.json").write_text(json.dumps({"world_size": 1}))
    (actor / "model_world_size_1_rank_0.pt").write_bytes(b"not a checkpoint")
    (actor / "huggingface" / "config.json").write_text("{}")
    calls = []

    def failing_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="boom")

    monkeypatch.setattr(ckpt.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match="(?s)merger failed.*boom"):
        ckpt.resolve_model(actor, merge_cache=tmp_path / "cache")
    assert calls[0][1:4] == ["-m", "verl.model_merger", "merge"]
    assert calls[0][calls[0].index("--local_dir") + 1] == str(actor)
    assert list((tmp_path / "cache").iterdir()) == []
