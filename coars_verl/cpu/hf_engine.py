"""Batched token-in/token-out generation with a transformers causal LM.

The engine behind the ``hf`` rollout backend, kept free of verl and Ray so it can be tested
directly against ``model.generate``. It matches what verl expects from a vLLM server:

* sampled token ids with their log-probs under the processed distribution (temperature,
  top-k and top-p applied, like vLLM's ``processed_logprobs``); greedy decoding reports the raw
  log-probs;
* ``prompt_logprobs``: the log-prob of every prompt token given the tokens before it, in vLLM's
  layout as verl re-packs it (entry ``i`` is ``log p(prompt[i+1] | prompt[:i+1])``, plus a dummy
  ``0.0`` for the last position), so a teacher can score a given sequence.

Prompts of one batch are left-padded and decoded together with a KV cache.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

_GREEDY_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class SamplingSettings:
    """Per-request sampling parameters, in vLLM's names."""

    max_tokens: int
    temperature: float = 1.0
    top_k: int = -1
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    want_logprobs: bool = False
    prompt_logprobs: Optional[int] = None
    seed: Optional[int] = None

    @property
    def greedy(self) -> bool:
        return self.temperature < _GREEDY_TEMPERATURE


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    sampling: SamplingSettings


@dataclass
class GenerationResult:
    token_ids: list[int]
    log_probs: Optional[list[float]]
    finish_reason: str  # "stop" (an end token) or "length"
    prompt_logprobs: Optional[list[list[float]]] = None
    prompt_logprob_ids: Optional[list[list[int]]] = None
    extra: dict = field(default_factory=dict)


def process_logits(logits: torch.Tensor, settings: Sequence[SamplingSettings], previous: list[list[int]]) -> torch.Tensor:
    """Apply repetition penalty, temperature, top-k and top-p row by row.

    Args:
        logits: ``(B, V)`` float logits of the next token.
        settings: ``B`` sampling settings.
        previous: ``B`` lists of token ids already in each sequence (for the repetition penalty).

    Returns:
        ``(B, V)`` processed logits; filtered-out entries are ``-inf``. Greedy rows keep raw logits.
    """
    out = logits.clone()
    for row, s in enumerate(settings):
        if s.repetition_penalty != 1.0 and previous[row]:
            seen = torch.tensor(sorted(set(previous[row])), dtype=torch.long)
            vals = out[row, seen]
            out[row, seen] = torch.where(vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty)
        if s.greedy:
            continue
        out[row] = out[row] / s.temperature
        if s.top_k is not None and 0 < s.top_k < out.shape[-1]:
            kth = torch.topk(out[row], s.top_k).values[-1]
            out[row] = out[row].masked_fill(out[row] < kth, float("-inf"))
        if s.top_p is not None and s.top_p < 1.0:
            sorted_vals, sorted_idx = torch.sort(out[row], descending=True)
            cumulative = torch.softmax(sorted_vals, dim=-1).cumsum(dim=-1)
            drop = cumulative - torch.softmax(sorted_vals, dim=-1) >= s.top_p  # keep the token that crosses top_p
            out[row, sorted_idx[drop]] = float("-inf")
    return out


DETERMINISTIC_REQUEST_PREFIX = "det-"
"""verl's mark of a request id that is the same in every run of a job (``rollout.full_determinism``)."""


class PromptSeeds:
    """Seeds for sampled requests taken from what is asked, not from when it arrives.

    With one shared generator, which tokens a request draws depends on the order and company in
    which concurrent requests reach the engine, so two runs of the same job sample different
    rollouts. Here a request's seed is a hash of the base seed, the training step, its prompt ids,
    its request id when that id is deterministic (verl's ``det-`` ids under
    ``rollout.full_determinism``; the ``coars_dialogue`` loop's name the step, the dataset row, the
    sample of the group and the role) and how many identical (id, prompt) pairs came before it in
    that step. With deterministic ids every request has a seed of its own, whatever the arrival
    order and whichever replica serves it, and two dataset rows that share a prompt keep their own
    samples. Without them (random ids) identical prompts swap seeds among themselves, which leaves
    each group's set of samples unchanged, but two rows with one prompt exchange samples by arrival
    order. The count is kept per step only (reset when the step changes), so memory stays bounded
    by one step's distinct requests.
    """

    def __init__(self, base_seed: int):
        self.base_seed = int(base_seed)
        self._step: Optional[int] = None
        self._seen: Counter[bytes] = Counter()

    def seed_for(self, prompt_ids: Sequence[int], step: Optional[int], request_id: Optional[str] = None) -> int:
        if step != self._step:
            self._step, self._seen = step, Counter()
        identity = request_id if request_id and request_id.startswith(DETERMINISTIC_REQUEST_PREFIX) else ""
        key = hashlib.blake2b(identity.encode() + b"|" + b",".join(str(int(t)).encode() for t in prompt_ids), digest_size=16).digest()
        occurrence = self._seen[key]
        self._seen[key] += 1
        material = f"{self.base_seed}|{step}|{occurrence}|".encode() + key
        return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big") >> 1  # torch seeds are < 2**63


class HFGenerationEngine:
    """Generates for many requests at once with one transformers model (CPU or any device)."""

    def __init__(self, model: torch.nn.Module, eos_token_ids: Sequence[int], pad_token_id: int, seed: int = 0):
        self.model = model.eval()
        self.eos_token_ids = tuple(int(t) for t in eos_token_ids)
        self.pad_token_id = int(pad_token_id)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run one batch to completion; every request stops at its own end token or ``max_tokens``."""
        if not requests:
            return []
        device = self.device
        lengths = [len(r.prompt_ids) for r in requests]
        if min(lengths) == 0:
            raise ValueError("every request needs at least one prompt token")
        width = max(lengths)
        batch = len(requests)
        input_ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long, device=device)
        attention = torch.zeros((batch, width), dtype=torch.long, device=device)
        for row, r in enumerate(requests):
            input_ids[row, width - lengths[row] :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            attention[row, width - lengths[row] :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)

        out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True)
        cache = out.past_key_values
        results = [GenerationResult(token_ids=[], log_probs=[] if r.sampling.want_logprobs else None, finish_reason="length") for r in requests]
        for row, r in enumerate(requests):
            if r.sampling.prompt_logprobs is not None:
                self._fill_prompt_logprobs(results[row], out.logits[row, width - lengths[row] :], r)

        settings = [r.sampling for r in requests]
        generators = [self._generator_for(s) for s in settings]
        history = [list(r.prompt_ids) for r in requests]
        active = [s.max_tokens > 0 for s in settings]
        next_logits = out.logits[:, -1, :].float()
        next_position = positions[:, -1:] + 1

        while any(active):
            processed = process_logits(next_logits, settings, history)
            logprobs = F.log_softmax(processed, dim=-1)
            step_tokens = torch.full((batch,), self.pad_token_id, dtype=torch.long)
            for row in range(batch):
                if not active[row]:
                    continue
                if settings[row].greedy:
                    token = int(torch.argmax(processed[row]))
                else:
                    token = int(torch.multinomial(logprobs[row].exp(), 1, generator=generators[row]))
                step_tokens[row] = token
                res = results[row]
                res.token_ids.append(token)
                history[row].append(token)
                if res.log_probs is not None:
                    res.log_probs.append(float(logprobs[row, token]))
                stops = settings[row].stop_token_ids + (() if settings[row].ignore_eos else self.eos_token_ids)
                if token in stops:
                    res.finish_reason, active[row] = "stop", False
                elif len(res.token_ids) >= settings[row].max_tokens:
                    active[row] = False
            if not any(active):
                break
            attention = torch.cat([attention, torch.ones((batch, 1), dtype=torch.long, device=device)], dim=-1)
            out = self.model(
                input_ids=step_tokens.view(batch, 1).to(device),
                attention_mask=attention,
                position_ids=next_position,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            next_logits = out.logits[:, -1, :].float()
            next_position = next_position + 1
        return results

    def _generator_for(self, settings: SamplingSettings) -> torch.Generator:
        if settings.seed is None:
            return self.generator
        return torch.Generator().manual_seed(int(settings.seed))

    @staticmethod
    def _fill_prompt_logprobs(result: GenerationResult, prompt_logits: torch.Tensor, request: GenerationRequest) -> None:
        """``prompt_logits``: ``(P, V)`` logits at the request's own prompt positions."""
        prompt = torch.tensor(request.prompt_ids, dtype=torch.long)
        logprobs = F.log_softmax(prompt_logits[:-1].float(), dim=-1).cpu()
        actual = logprobs.gather(-1, prompt[1:].unsqueeze(-1))
        k = int(request.sampling.prompt_logprobs)
        if k == 0:
            values, ids = actual, prompt[1:].unsqueeze(-1)
        else:
            values, ids = torch.topk(logprobs, k, dim=-1)
        width = max(k, 1)
        result.prompt_logprobs = values.tolist() + [[0.0] * width]
        result.prompt_logprob_ids = ids.tolist() + [[0] * width]
