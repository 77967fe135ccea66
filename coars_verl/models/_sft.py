"""Supervised fine-tuning on (chat messages, answer) pairs: the loop the model builders share.

Loss only on the answer tokens (plus the end-of-turn token); batches drawn with a seeded
``random.Random``; the torch RNG is forked so that a build does not disturb its caller's.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Optional, Sequence

Example = tuple[list[dict[str, str]], str]
"""The chat messages an agent saw, and the answer it should give."""


def encode_examples(tokenizer: Any, examples: Sequence[Example], end_token: str = "<|im_end|>") -> list[tuple[list[int], list[int]]]:
    """(prompt ids with the generation prompt, answer ids + end-of-turn id) per example."""
    end = tokenizer.convert_tokens_to_ids(end_token)
    rows = []
    for messages, answer in examples:
        prompt = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, return_dict=False)
        rows.append((list(prompt), tokenizer.encode(answer, add_special_tokens=False) + [end]))
    return rows


def supervised_finetune(
    model: Any,
    rows: Sequence[tuple[list[int], list[int]]],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    pad_token_id: int,
    decay_to_zero: bool = False,
    on_step: Optional[Callable[[int, float], None]] = None,
) -> float:
    """AdamW on the answer tokens of ``rows`` for ``steps`` batches; returns the last batch's loss.

    ``decay_to_zero``: the learning rate falls linearly from ``lr`` to 0 over the steps (a sharper
    model at the end than a constant rate gives in the same number of steps)."""
    import torch

    rng = random.Random(seed)
    loss_value = float("nan")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 - k / steps if decay_to_zero else 1.0)
        model.train()
        for step in range(steps):
            batch = rng.sample(list(rows), min(batch_size, len(rows)))
            width = max(len(p) + len(a) for p, a in batch)
            ids = torch.full((len(batch), width), pad_token_id)
            labels = torch.full((len(batch), width), -100)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (prompt, answer) in enumerate(batch):
                seq = prompt + answer
                ids[row, : len(seq)] = torch.tensor(seq)
                labels[row, len(prompt) : len(seq)] = torch.tensor(answer)
                attention[row, : len(seq)] = 1
            loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_value = loss.item()
            if on_step is not None:
                on_step(step + 1, loss_value)
    model.eval()
    return loss_value
