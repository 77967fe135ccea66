"""Fakes for the evaluation tests: a text codec and a scripted backend (no model), and a small data folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from coars_verl.dialogue.prompts import PromptTemplates, recommender_initial_messages

TEMPLATES = PromptTemplates()


class ByteCodec:
    """Messages <-> token ids without a tokenizer: the prompt is the UTF-8 bytes of the JSON messages."""

    def encode(self, messages) -> list[int]:
        return list(json.dumps(list(messages)).encode("utf-8"))

    def decode(self, token_ids) -> str:
        return bytes(token_ids).decode("utf-8", errors="replace")

    def control_markers(self) -> tuple[str, ...]:
        return ("<|im_start|>", "<|im_end|>")


def role_of(messages: list[dict]) -> str:
    return "recommender" if messages[0]["content"].startswith(TEMPLATES.recommender_system) else "user"


def last_suggestion(messages: list[dict]) -> str:
    """The item the recommender suggested in the user agent's latest message."""
    found = re.findall(r"suggests: (.*)\n", messages[-1]["content"])
    return found[-1] if found else ""


class ScriptedBackend:
    """A backend whose answers come from ``policy(messages) -> text``; records every call."""

    name = "scripted"

    def __init__(self, policy: Callable[[list[dict]], str], max_context: Optional[int] = None):
        self.policy = policy
        self.max_context = max_context
        self.calls: list[tuple[int, int]] = []  # (number of prompts, max_tokens)
        self.prompts: list[list[dict]] = []

    def generate(self, prompts, max_tokens):
        self.calls.append((len(prompts), max_tokens))
        out = []
        for prompt in prompts:
            messages = json.loads(bytes(prompt).decode("utf-8"))
            self.prompts.append(messages)
            out.append(list(self.policy(messages).encode("utf-8"))[:max_tokens])
        return out


def candidate_titles_of(messages: list[dict]) -> list[str]:
    block = messages[1]["content"].split("Candidates:\n", 1)[1].split("\n\n", 1)[0]
    return [re.sub(r"^\d+\. ", "", line) for line in block.splitlines()]


def first_candidate_policy(yes_to: str = "") -> Callable[[list[dict]], str]:
    """Recommender: candidate number k at turn k; user: yes only to ``yes_to``."""

    def policy(messages: list[dict]) -> str:
        if role_of(messages) == "recommender":
            turn = sum(m["role"] == "assistant" for m in messages) + 1
            return f"Reason: number {turn}.\nItem: {turn}"
        return f"Reason: ok.\nDecision: {'yes' if last_suggestion(messages) == yes_to else 'no'}"

    return policy


def make_extra_info(index: int, user: str, candidates: list[str], target: str, history=("H1", "H2", "H3")) -> dict:
    return {
        "user_id": user,
        "history_titles": list(history),
        "history_item_ids": [f"h{i}" for i in range(len(history))],
        "candidate_titles": list(candidates),
        "candidate_item_ids": [str(100 + i) for i in range(len(candidates))],
        "target_title": target,
        "target_item_id": str(100 + candidates.index(target)),
        "split": "test",
        "index": index,
    }


def write_small_data(folder: Path, num_users: int = 5, windows_per_user: int = 2, items_per_user: int = 4) -> Path:
    """A data_prep-shaped folder (test.parquet, user_sim_test.parquet, items.parquet) with few rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, sims = [], []
    titles = [f"Film {c}" for c in "ABCDEFGH"]
    for u in range(num_users):
        for w in range(windows_per_user):
            index = len(rows)
            candidates = titles[(u + w) % 4 : (u + w) % 4 + 4]
            target = candidates[(u + 2 * w) % 4]
            info = make_extra_info(index, str(u), candidates, target)
            rows.append(
                {
                    "data_source": "coars/test",
                    "prompt": recommender_initial_messages(info["history_titles"], candidates),
                    "ability": "recommendation",
                    "reward_model": {"style": "rule", "ground_truth": target},
                    "agent_name": "coars_dialogue",
                    "extra_info": info,
                }
            )
        items = titles[u : u + items_per_user]
        sims.append(
            {
                "data_source": "coars/test",
                "split": "test",
                "index": u,
                "user_id": str(u),
                "history_titles": ["H1", "H2"],
                "history_item_ids": ["h1", "h2"],
                "item_titles": items,
                "item_ids": [str(100 + titles.index(t)) for t in items],
                "labels": [i % 2 == 0 for i in range(len(items))],
            }
        )
    pd.DataFrame(rows).to_parquet(folder / "test.parquet")
    pd.DataFrame(sims).to_parquet(folder / "user_sim_test.parquet")
    pd.DataFrame(
        {
            "item_id": [str(100 + i) for i in range(len(titles))],
            "title": titles,
            "raw_title": titles,
            "interactions": list(range(len(titles))),
            "train_interactions": [3, 3, 1, 0, 5, 2, 2, 1],
        }
    ).to_parquet(folder / "items.parquet")
    return folder
