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


def write_lora_actor_checkpoint(model_path, actor, with_hf_weights):
    """A LoRA run's checkpoint as verl 0.9.1 writes it: PEFT-keyed shards, ``lora_train_meta.json``, and with
    ``hf_model`` in save_contents the same PEFT-keyed state under ``huggingface/``. Returns the trained PEFT model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # a trained adapter: B is no longer its zero initialisation
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    state = peft_model.state_dict()
    (actor / "huggingface").mkdir(parents=True)
    torch.save(state, actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
    (actor / "lora_train_meta.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "task_type": "CAUSAL_LM"}))
    base.config.save_pretrained(actor / "huggingface")
    AutoTokenizer.from_pretrained(model_path).save_pretrained(actor / "huggingface")
    if with_hf_weights:
        plain = AutoModelForCausalLM.from_config(base.config)
        plain.save_pretrained(actor / "huggingface", state_dict={k: v.clone() for k, v in state.items()})
    return peft_model


def _logits(model, ids=torch.tensor([[1, 40, 41, 42, 43, 44]])):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("with_hf_weights", [True, False], ids=["huggingface-folder", "verl-merger"])
def test_lora_checkpoint_is_evaluated_with_its_adapter(tiny_model_path, tmp_path, with_hf_weights):
    from transformers import AutoModelForCausalLM

    actor = tmp_path / "lora" / "global_step_3" / "actor"
    trained = write_lora_actor_checkpoint(tiny_model_path, actor, with_hf_weights)
    resolved = ckpt.resolve_model(actor, merge_cache=tmp_path / "cache")
    assert resolved.source == ("verl_hf+lora" if with_hf_weights else "verl_merged+lora")
    marker = json.loads((resolved.path / ckpt.MERGE_MARKER).read_text())
    assert marker["lora"] == {"r": 4, "lora_alpha": 8.0, "target_modules": ["down_proj", "q_proj", "v_proj"]}

    evaluated = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    expected, base_logits, got = _logits(trained), _logits(base), _logits(evaluated)
    tolerance = 1e-4 if with_hf_weights else 0.05  # verl's merger writes bfloat16
    assert (expected - base_logits).abs().max() > 0.5, "the adapter must change the outputs for this test to mean anything"
    assert torch.allclose(got, expected, atol=tolerance), (got - expected).abs().max()
    # the trained weights, not the base with the adapter dropped (and not a fresh initialisation)
    q_proj = trained.base_model.model.model.layers[0].self_attn.q_proj
    merged_q = q_proj.base_layer.weight + q_proj.scaling["default"] * q_proj.lora_B.default.weight @ q_proj.lora_A.default.weight
    assert torch.allclose(evaluated.model.layers[0].self_attn.q_proj.weight, merged_q, atol=tolerance)


def test_lora_checkpoint_without_its_scale_is_refused(tiny_model_path, tmp_path):
    actor = tmp_path / "global_step_1" / "actor"
    write_lora_actor_checkpoint(tiny_model_path, actor, with_hf_weights=True)
    (actor / "lora_train_meta.json").unlink()
    with pytest.raises(ValueError, match="lora_train_meta.json"):
        ckpt.resolve_model(actor, merge_cache=tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())
