"""End to end: a LoRA run of main_ppo on CPU writes a checkpoint that the evaluation scores with its adapter.

verl keeps a LoRA actor's weights in PEFT form (``base_layer`` + ``lora_A``/``lora_B``), both in its
shards and in ``huggingface/``. Loading either as a plain model scores the base (verl's merger puts the
adapter aside) or a freshly initialised model (the PEFT keys match nothing): this checks both routes
give the trained model, on a real checkpoint.
"""

import json
import shutil

import pytest
import torch

from coars_verl.eval import checkpoint as ckpt
from coars_verl.eval.cli import main as eval_main
from coars_verl.eval.report import load_result
from helpers import run_on_title_prompts

IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46]])


@pytest.fixture(scope="module")
def lora_actor(tmp_path_factory, primed_model_path):
    work = tmp_path_factory.mktemp("lora")
    run = run_on_title_prompts(work, primed_model_path, 8, [
        "actor_rollout_ref.model.lora_rank=8", "actor_rollout_ref.model.lora_alpha=16",
        "actor_rollout_ref.model.lora.merge=True",  # the hf rollout takes merged weights (as vLLM can)
        "actor_rollout_ref.actor.optim.lr=0.05",  # large enough that two steps visibly move the adapter
        "trainer.total_training_steps=2", "trainer.save_freq=2", f"trainer.default_local_dir={work / 'ckpt'}",
    ])
    for step in run.metrics:  # the rollout served the merged weights the trainer had (verl 0.9.1 sends merged
        # LoRA weights in bfloat16: transformer_impl._merged_lora_per_tensor_param; full weights go exact, < 1e-4)
        assert step["training/rollout_probs_diff_max"] < 2e-2, step
    return work / "ckpt" / "global_step_2" / "actor"


def _logits(path):
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)(IDS).logits


def test_lora_checkpoint_resolves_to_the_trained_model(lora_actor, primed_model_path, tmp_path):
    assert json.loads((lora_actor / "lora_train_meta.json").read_text())["r"] == 8
    from_hf = ckpt.resolve_model(lora_actor, merge_cache=tmp_path / "cache")
    assert from_hf.source == "verl_hf+lora"

    without_hf = tmp_path / "copy" / "global_step_2" / "actor"  # a GPU recipe's checkpoint: shards only
    shutil.copytree(lora_actor, without_hf)
    for weights in (without_hf / "huggingface").glob("*.safetensors"):
        weights.unlink()
    merged = ckpt.resolve_model(without_hf, merge_cache=tmp_path / "cache")
    assert merged.source == "verl_merged+lora"

    base, trained, via_merger = _logits(primed_model_path), _logits(from_hf.path), _logits(merged.path)
    assert (trained - base).abs().max() > 0.5, "two LoRA steps at this learning rate must change the model"
    assert (trained - via_merger).abs().max() < 0.1  # verl's merger rounds to bfloat16


def test_evaluation_of_base_and_trained_adapter_differ(lora_actor, primed_model_path, movielens_dir, tmp_path):
    outputs = {}
    for label, model in (("base", primed_model_path), ("lora", lora_actor)):
        out = tmp_path / label
        code = eval_main(["--model", str(model), "--data", str(movielens_dir), "--out", str(out), "--merge-cache", str(tmp_path / "cache"),
                          "--max-samples", "4", "--max-users", "4", "--max-turns", "1", "--max-tokens", "12", "--backend", "hf", "--no-progress"])
        assert code == 0
        assert (out / "dialogue.jsonl").is_file()
        result = load_result(out / "results.json")
        records = sorted((json.loads(line) for line in (out / "dialogue.jsonl").read_text().splitlines()), key=lambda r: r["key"])
        outputs[label] = (result["model"]["source"], [record["summary"]["rec_raw"] for record in records])
    assert outputs["base"][0] == "hf" and outputs["lora"][0] == "verl_hf+lora"
    assert len(outputs["base"][1]) == len(outputs["lora"][1]) == 4
    assert outputs["base"][1] != outputs["lora"][1], "the evaluation answered with the base model's words"
