"""Generation backends of the evaluation tool, behind one small interface.

``backend.generate(prompts, max_tokens) -> completions``: token ids in, the generated token ids of
each prompt out (greedy decoding, in prompt order; a completion may end with an end-of-sequence
token). ``backend.max_context`` is the longest prompt + completion the model takes (or None).

* :class:`HFBackend`: transformers on CPU (or any torch device), through the project's batched
  KV-cache engine :class:`coars_verl.cpu.hf_engine.HFGenerationEngine`.
* :class:`VLLMBackend`: vLLM's offline ``LLM`` on GPU (``pip install coars-verl[gpu]``); imported
  only when used.

``--backend auto`` picks vLLM when it is importable and CUDA is available, else transformers.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

BACKENDS = ("auto", "hf", "vllm")


class GenerationBackend(Protocol):
    name: str
    max_context: Optional[int]

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: int) -> list[list[int]]: ...


VLLM_RESERVED_KWARGS = ("model", "tokenizer", "dtype", "seed")
"""vllm.LLM arguments the tool sets itself (--model, --dtype, --seed): not accepted in --vllm-kwargs."""


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run in this environment (the message says why and what to do)."""


def vllm_import_problem() -> Optional[str]:
    """Why ``import vllm`` fails here (missing or broken install), or None when it imports."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed: pip install 'coars-verl[gpu]' (or --backend hf)"
    try:
        importlib.import_module("vllm")
    except Exception as exc:  # a broken install (CUDA / torch mismatch) raises anything
        return f"vLLM is installed but does not import ({type(exc).__name__}: {exc}); fix the install or use --backend hf"
    return None


def vllm_available() -> bool:
    """vLLM imports and a CUDA device is visible (what ``--backend auto`` needs to pick it)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
    except Exception:  # pragma: no cover - a broken torch install
        return False
    return vllm_import_problem() is None


def check_vllm_kwargs(vllm_kwargs: Optional[dict[str, Any]]) -> None:
    """ValueError when ``--vllm-kwargs`` sets an argument the tool sets itself."""
    reserved = sorted(set(vllm_kwargs or {}) & set(VLLM_RESERVED_KWARGS))
    if reserved:
        raise ValueError(f"--vllm-kwargs: {reserved} are set by the tool itself (use --model, --dtype, --seed); remove them")


def check_backend(name: str, vllm_kwargs: Optional[dict[str, Any]] = None) -> None:
    """Fail early (before any file is written or a checkpoint merged) when the backend cannot run
    or its options collide; raises ``BackendUnavailable`` or ``ValueError``."""
    check_vllm_kwargs(vllm_kwargs)
    if name == "vllm":
        problem = vllm_import_problem()
        if problem:
            raise BackendUnavailable(f"the vllm backend: {problem}")


def resolve_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    return name


def _config_max_positions(model_path: str | Path) -> Optional[int]:
    try:
        with open(Path(model_path) / "config.json", encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError):
        return None
    config = config.get("text_config", config)
    value = config.get("max_position_embeddings")
    return int(value) if isinstance(value, int) and value > 0 else None


# --------------------------------------------------------------------------------------------------
# transformers


class HFBackend:
    """Greedy batched generation with a transformers causal LM; prompts are sorted by length and run
    in chunks of ``batch_size`` (less padding), results come back in prompt order."""

    name = "hf"

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 8,
        eos_token_ids: Optional[Sequence[int]] = None,
        pad_token_id: Optional[int] = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from coars_verl.cpu.hf_engine import HFGenerationEngine

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
        model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch_dtype).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        eos = list(eos_token_ids) if eos_token_ids is not None else _eos_ids(model, tokenizer)
        if not eos:
            raise ValueError(f"{model_path}: no end-of-sequence token id in the tokenizer or generation config")
        pad = pad_token_id if pad_token_id is not None else (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0])
        self.engine = HFGenerationEngine(model, eos_token_ids=eos, pad_token_id=pad)
        self.batch_size = int(batch_size)
        self.max_context = _config_max_positions(model_path)
        self.device = str(device)

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: int) -> list[list[int]]:
        from coars_verl.cpu.hf_engine import GenerationRequest, SamplingSettings

        settings = SamplingSettings(max_tokens=int(max_tokens), temperature=0.0)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[int]] = [[] for _ in prompts]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            results = self.engine.generate([GenerationRequest(list(prompts[i]), settings) for i in chunk])
            for i, result in zip(chunk, results):
                out[i] = list(result.token_ids)
        return out


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    generation = getattr(model, "generation_config", None)
    for value in (getattr(generation, "eos_token_id", None), tokenizer.eos_token_id):
        for token in value if isinstance(value, (list, tuple)) else [value]:
            if token is not None and int(token) not in ids:
                ids.append(int(token))
    return ids


# --------------------------------------------------------------------------------------------------
# vLLM


class VLLMBackend:
    """Greedy generation with vLLM's offline engine (``vllm.LLM``), token ids in and out.

    ``engine_kwargs`` go to ``vllm.LLM`` as they are (e.g. ``gpu_memory_utilization``,
    ``max_model_len``, ``tensor_parallel_size``, ``enforce_eager``). ``vllm_module`` replaces the
    ``vllm`` import (tests).
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str = "auto",
        seed: int = 0,
        engine_kwargs: Optional[dict[str, Any]] = None,
        vllm_module: Any = None,
    ):
        if vllm_module is None:
            check_backend("vllm", engine_kwargs)
            import vllm as vllm_module  # noqa: PLC0415 - optional dependency, imported on use
        else:
            check_vllm_kwargs(engine_kwargs)
        self._sampling_params = vllm_module.SamplingParams
        kwargs = {"enable_prefix_caching": True, **(engine_kwargs or {})}
        self.llm = vllm_module.LLM(model=str(model_path), tokenizer=str(model_path), dtype=dtype, seed=seed, **kwargs)
        self.max_context = self._engine_max_len() or kwargs.get("max_model_len") or _config_max_positions(model_path)

    def _engine_max_len(self) -> Optional[int]:
        for path in (("llm_engine", "model_config", "max_model_len"), ("llm_engine", "vllm_config", "model_config", "max_model_len")):
            value: Any = self.llm
            try:
                for attribute in path:
                    value = getattr(value, attribute)
            except AttributeError:
                continue
            if isinstance(value, int) and value > 0:
                return value
        return None

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: int) -> list[list[int]]:
        return self.generate_each(prompts, [max_tokens] * len(prompts))

    def generate_each(self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int]) -> list[list[int]]:
        """One engine call for prompts with different token limits (vLLM takes one SamplingParams per prompt)."""
        if not prompts:
            return []
        params = [self._sampling_params(temperature=0.0, max_tokens=int(limit)) for limit in max_tokens]
        requests = [{"prompt_token_ids": [int(t) for t in prompt]} for prompt in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        return [list(output.outputs[0].token_ids) for output in outputs]


def make_backend(
    name: str,
    model_path: str | Path,
    *,
    device: str = "auto",
    dtype: Optional[str] = None,
    batch_size: int = 8,
    seed: int = 0,
    vllm_kwargs: Optional[dict[str, Any]] = None,
) -> GenerationBackend:
    """Build a backend by name (``auto`` resolved first). ``dtype`` None: float32 on CPU, auto for vLLM."""
    name = resolve_backend_name(name)
    if name == "vllm":
        return VLLMBackend(model_path, dtype=dtype or "auto", seed=seed, engine_kwargs=vllm_kwargs)
    return HFBackend(model_path, device=device, dtype=dtype or "float32", batch_size=batch_size)
