"""Turning a model argument into a Hugging Face model folder the backends can load.

Accepted:

* a Hugging Face model folder (``config.json`` plus ``*.safetensors`` / ``pytorch_model*.bin``);
* a verl FSDP checkpoint of the actor, ``.../global_step_N/actor`` (``fsdp_config.json``,
  ``model_world_size_W_rank_R.pt`` shards, ``huggingface/`` with config and tokenizer), or the
  ``global_step_N`` folder above it. When ``huggingface/`` already holds the weights (the run saved
  with ``checkpoint.save_contents`` including ``hf_model``) it is used directly; otherwise the shards
  are merged with verl's model merger (``python -m verl.model_merger merge --backend fsdp``) into a
  cache folder, once: a later call finds the merged folder (keyed by the checkpoint's path and its
  shard files' sizes and times) and reuses it.

A LoRA run's checkpoint holds the PEFT model's weights; in both cases above the adapter is merged
into the base weights (:mod:`coars_verl.eval.lora_merge`), in the cache folder, so that the
evaluation scores the trained model and not the base (or, from ``huggingface/``, a freshly
initialised one). The source then ends in ``+lora``.

Note: verl's merger writes the weights in bfloat16 (it casts every shard); a model trained in
float32 (the CPU recipes) is therefore evaluated with bfloat16-rounded weights unless the
checkpoint has ``hf_model`` weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from coars_verl.eval.lora_merge import is_peft_state, merge_adapter_in_place, merge_peft_folder, weight_keys

MERGE_MARKER = "coars_merged_from.json"
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.safetensors.index.json")


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    """A Hugging Face model folder."""
    source: str
    """``hf`` (given as is), ``verl_hf`` (the checkpoint's huggingface/ weights) or ``verl_merged``; with
    ``+lora`` when a LoRA adapter was merged into the weights."""
    checkpoint: Optional[Path] = None
    """The verl actor folder, for the two ``verl_*`` sources."""


def has_hf_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(any(folder.glob(p)) for p in _WEIGHT_PATTERNS)


def is_verl_actor_checkpoint(folder: Path) -> bool:
    return (folder / "fsdp_config.json").is_file() and any(folder.glob("model_world_size_*_rank_*.pt"))


def default_merge_cache() -> Path:
    env = os.environ.get("COARS_VERL_MERGE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "coars_verl" / "merged"


def checkpoint_fingerprint(actor: Path) -> str:
    """A key for the merged folder: the actor folder's absolute path and its shards' sizes and times."""
    parts = [str(actor.resolve())]
    for shard in sorted(actor.glob("model_world_size_*_rank_*.pt")):
        stat = shard.stat()
        parts.append(f"{shard.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def resolve_model(path: str | Path, merge_cache: Optional[str | Path] = None) -> ResolvedModel:
    """The Hugging Face folder to load for ``path`` (merging a verl checkpoint when needed)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder or checkpoint")
    if has_hf_weights(folder):
        return ResolvedModel(folder.resolve(), "hf")
    actor = folder / "actor" if is_verl_actor_checkpoint(folder / "actor") else folder
    if not is_verl_actor_checkpoint(actor):
        raise ValueError(
            f"{folder}: neither a Hugging Face model folder (config.json + weights) nor a verl FSDP checkpoint "
            "(global_step_N or global_step_N/actor with fsdp_config.json and model_world_size_*_rank_*.pt)"
        )
    hf_dir = actor / "huggingface"
    cache = Path(merge_cache or default_merge_cache())
    if has_hf_weights(hf_dir):
        if not is_peft_state(weight_keys(hf_dir)):
            return ResolvedModel(hf_dir.resolve(), "verl_hf", actor.resolve())
        target = cache / f"{_name_of(actor)}-{checkpoint_fingerprint(actor)}-hf-lora"
        if not has_hf_weights(target):
            _build_atomically(target, lambda tmp: {"lora": merge_peft_folder(hf_dir, actor, tmp).as_dict(), "from": str(hf_dir.resolve())})
        return ResolvedModel(target.resolve(), "verl_hf+lora", actor.resolve())
    if not (hf_dir / "config.json").is_file():
        raise ValueError(f"{actor}: verl checkpoint without huggingface/config.json; cannot merge it")
    target = cache / f"{_name_of(actor)}-{checkpoint_fingerprint(actor)}"
    if not has_hf_weights(target):
        merge_verl_checkpoint(actor, target)
    lora = json.loads((target / MERGE_MARKER).read_text()).get("lora") if (target / MERGE_MARKER).is_file() else None
    return ResolvedModel(target.resolve(), "verl_merged+lora" if lora else "verl_merged", actor.resolve())


def _name_of(actor: Path) -> str:
    parent = actor.resolve().parent.name if actor.name == "actor" else actor.name
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in parent) or "checkpoint"


def merge_verl_checkpoint(actor: Path, target: Path) -> Path:
    """Run verl's FSDP model merger (and merge a LoRA adapter it wrote beside the weights) into a
    temporary folder next to ``target``, then move it in place."""
    command = [
        sys.executable, "-m", "verl.model_merger", "merge",
        "--backend", "fsdp", "--local_dir", str(actor), "--target_dir", "<tmp>",
    ]

    def merge(tmp: Path) -> dict:
        run = subprocess.run([*command[:-1], str(tmp)], capture_output=True, text=True)
        if run.returncode != 0 or not has_hf_weights(tmp):
            tail = (run.stdout + run.stderr)[-4000:]
            raise RuntimeError(f"verl model merger failed (exit {run.returncode}) on {actor}:\n{tail}")
        lora = merge_adapter_in_place(tmp)
        return {"checkpoint": str(actor.resolve()), "command": command, **({"lora": lora.as_dict()} if lora else {})}

    return _build_atomically(target, merge)


def _build_atomically(target: Path, build: Callable[[Path], dict]) -> Path:
    """``build`` fills a temporary folder next to ``target`` and returns the marker's content; the folder
    then replaces ``target``. A failure leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        marker = build(tmp)
        (tmp / MERGE_MARKER).write_text(json.dumps(marker, indent=2))
        if has_hf_weights(target):
            return target  # another process merged the same checkpoint meanwhile; keep its folder
        if target.exists():
            shutil.rmtree(target)  # an incomplete folder
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
