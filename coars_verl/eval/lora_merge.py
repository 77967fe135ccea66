"""Folding a LoRA adapter into the base weights, so that a LoRA-trained checkpoint evaluates as trained.

A verl FSDP checkpoint of a LoRA run (``actor_rollout_ref.model.lora_rank > 0``) holds the PEFT
model's state: keys ``base_model.model.<module>.base_layer.weight`` next to
``<module>.lora_A.default.weight`` / ``lora_B.default.weight``. Loaded as a plain Hugging Face
model, none of those keys match and every weight is newly initialised; verl's model merger instead
writes the base weights and puts the adapter beside them in ``lora_adapter/``, which a plain load
ignores. Either way the evaluation would score a model that was never trained. Both layouts are
merged here with peft (``W + (lora_alpha / r) B A`` per target module) into one plain folder that
both backends load as is (for vLLM this replaces ``enable_lora`` + ``LoRARequest``).

The rank and scale come from ``lora_train_meta.json``, which verl writes into the actor folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

PEFT_PREFIX = "base_model.model."
LORA_META = "lora_train_meta.json"
ADAPTER_DIR = "lora_adapter"
"""Where verl's model merger puts the adapter, beside the base weights."""


@dataclass(frozen=True)
class LoraInfo:
    rank: int
    alpha: float
    target_modules: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"r": self.rank, "lora_alpha": self.alpha, "target_modules": list(self.target_modules)}


def weight_keys(folder: Path) -> list[str]:
    """Tensor names of a folder's safetensors files, read from their headers only."""
    from safetensors import safe_open

    keys: list[str] = []
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            keys.extend(handle.keys())
    return keys


def is_peft_state(keys: list[str]) -> bool:
    return any(key.startswith(PEFT_PREFIX) for key in keys)


def read_lora_meta(actor: Path) -> tuple[int, float]:
    """(r, lora_alpha) from the actor folder's ``lora_train_meta.json``; ValueError when absent or unusable."""
    path = actor / LORA_META
    if not path.is_file():
        raise ValueError(f"{actor}: a LoRA checkpoint without {LORA_META}; its scale (lora_alpha / r) is unknown, so the "
                         "adapter cannot be merged (verl writes this file on every LoRA checkpoint)")
    meta = json.loads(path.read_text())
    try:
        rank, alpha = int(meta["r"]), float(meta["lora_alpha"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: expected integer 'r' and number 'lora_alpha', got {meta!r}") from error
    if rank <= 0 or alpha <= 0:
        raise ValueError(f"{path}: expected r > 0 and lora_alpha > 0, got r={rank}, lora_alpha={alpha}")
    return rank, alpha


def _target_modules(keys: list[str]) -> tuple[str, ...]:
    if any("lora_magnitude_vector" in key for key in keys):
        raise ValueError("a DoRA checkpoint (lora_magnitude_vector weights): only plain LoRA adapters can be merged")
    # <prefix>.<module>.lora_A.default.weight
    return tuple(sorted({key.split(".")[-4] for key in keys if ".lora_A." in key}))


def merge_peft_folder(hf_dir: Path, actor: Path, out: Path) -> LoraInfo:
    """Write into ``out`` a plain model folder: ``hf_dir``'s PEFT-keyed weights with the adapter merged in,
    and ``hf_dir``'s config, tokenizer and generation files."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    rank, alpha = read_lora_meta(actor)
    state: dict[str, torch.Tensor] = {}
    for file in sorted(hf_dir.glob("*.safetensors")):
        state.update(load_file(str(file)))
    info = LoraInfo(rank, alpha, _target_modules(list(state)))
    if not info.target_modules:
        raise ValueError(f"{hf_dir}: PEFT-keyed weights without lora_A/lora_B tensors")
    dtype = next(tensor.dtype for tensor in state.values() if tensor.is_floating_point())
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(hf_dir), dtype=dtype)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(info.target_modules)))
    loaded = peft_model.load_state_dict(state, strict=False)
    tied = {f"{PEFT_PREFIX}lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = set(loaded.missing_keys) - tied
    if missing or loaded.unexpected_keys:
        raise ValueError(f"{hf_dir}: weights do not match the model with a rank-{rank} adapter on {list(info.target_modules)}: "
                         f"missing {sorted(missing)[:5]}, unexpected {sorted(loaded.unexpected_keys)[:5]}")
    out.mkdir(parents=True, exist_ok=True)
    for file in hf_dir.iterdir():
        if file.is_file() and not file.name.endswith(".safetensors") and file.name != "model.safetensors.index.json":
            shutil.copy2(file, out / file.name)
    peft_model.merge_and_unload().save_pretrained(out, safe_serialization=True)
    return info


def merge_adapter_in_place(folder: Path) -> LoraInfo | None:
    """Fold verl's model merger output (base weights + ``lora_adapter/``) into plain weights; None without an adapter.
    The adapter folder is kept for anyone who wants to serve it separately."""
    adapter = folder / ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        return None
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    if adapter_config.get("use_dora"):
        raise ValueError(f"{adapter}: a DoRA adapter: only plain LoRA adapters can be merged")
    base = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    for file in folder.glob("*.safetensors"):
        file.unlink()
    (folder / "model.safetensors.index.json").unlink(missing_ok=True)
    merged.save_pretrained(folder, safe_serialization=True)
    return LoraInfo(int(adapter_config["r"]), float(adapter_config["lora_alpha"]), tuple(sorted(adapter_config["target_modules"])))
