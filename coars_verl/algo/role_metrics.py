"""Per-role training metrics of a batch of dialogue samples (pure; no verl)."""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_USER

ROLE_PREFIX = {ROLE_RECOMMENDER: "rec", ROLE_USER: "user"}

# dialogue-level facts, read once per dialogue (from its recommender sample)
_DIALOGUE_KEYS = {"hit": "hit_rate", "turns": "turns_mean", "k_hit": "k_hit_mean"}
_ROLE_KEYS = {
    ROLE_RECOMMENDER: {"rec/valid_ratio": "valid_ratio", "rec/format_errors": "format_errors_mean"},
    ROLE_USER: {
        "user/accuracy": "accuracy",
        "user/false_accepts": "false_accepts_mean",
        "user/false_rejects": "false_rejects_mean",
        "user/format_errors": "format_errors_mean",
    },
}


def role_advantage_gap(sessions: Sequence[str], roles: Sequence[str], advantages: Sequence[float]) -> float:
    """Mean |A_user - A_recommender| over the dialogues that have both samples (0.0 if none).

    Zero would mean both roles got the same advantage, as when verl's stock ``grpo`` broadcasts
    the final output's advantage to every output of a run.
    """
    by_session: dict[str, dict[str, float]] = defaultdict(dict)
    for session, role, adv in zip(sessions, roles, advantages):
        by_session[session][role] = adv
    gaps = [abs(a[ROLE_USER] - a[ROLE_RECOMMENDER]) for a in by_session.values() if ROLE_USER in a and ROLE_RECOMMENDER in a]
    return float(np.mean(gaps)) if gaps else 0.0


def role_metrics(
    roles: Sequence[str],
    rewards: Sequence[float],
    reward_infos: Sequence[Mapping[str, float]],
    response_lengths: Sequence[float],
    advantages: Sequence[float],
    prefix: str = "coars",
) -> dict[str, float]:
    """Mean reward, response length and |advantage| per role, and the dialogue and per-role
    quality figures (hit rate, turns, valid ratio, user accuracy, ...).

    Args:
        roles, rewards, reward_infos, response_lengths, advantages: one entry per sample (B): its
            role, the reward it trained on, its dialogue's reward info (empty for a single-turn
            sample), its response length and its mean advantage over its valid tokens.
    """
    out: dict[str, float] = {}
    by_role: dict[str, list[int]] = defaultdict(list)
    for i, role in enumerate(roles):
        by_role[role].append(i)
    for role, idx in by_role.items():
        name = f"{prefix}/{ROLE_PREFIX.get(role, role)}"
        out[f"{name}/reward_mean"] = float(np.mean([rewards[i] for i in idx]))
        out[f"{name}/response_length_mean"] = float(np.mean([response_lengths[i] for i in idx]))
        out[f"{name}/advantage_abs_mean"] = float(np.mean([abs(advantages[i]) for i in idx]))
        out[f"{name}/samples"] = float(len(idx))
        for key, metric in _ROLE_KEYS.get(role, {}).items():
            out[f"{name}/{metric}"] = float(np.mean([reward_infos[i][key] for i in idx]))
    dialogues = by_role.get(ROLE_RECOMMENDER, [])
    for key, metric in _DIALOGUE_KEYS.items():
        if dialogues:
            out[f"{prefix}/dialogue/{metric}"] = float(np.mean([reward_infos[i][key] for i in dialogues]))
    return out
