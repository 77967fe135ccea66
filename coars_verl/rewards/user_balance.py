"""A class-balanced user reward over the batch (``coars.reward.user_balance: batch``; pure, no verl).

Why: the interaction reward's user accuracy (``r_user``, :mod:`coars_verl.rewards.interaction`) counts every
judgment alike. When most items the recommender proposes are not the target, "no" to everything
scores high, and a user agent that cannot yet tell the target apart drifts to it (the always-no
collapse, docs/results.md). One dialogue cannot see that frequency: it judges a handful of items,
often none of them the target. The batch can. Here each judgment's correctness is weighted by the
inverse frequency of its class (target / other) over the batch's judgments, as in balanced
accuracy, so that summed over the batch's judgments answering all "no" and answering all "yes"
earn the same::

    w_target = J / (2 * J_target),   w_other = J / (2 * J_other)     (J = J_target + J_other, batch totals)
    balanced_d = (w_target * correct_target_d + w_other * correct_other_d) / answered_d
    R_user_d  <- R_user_d - accuracy_d + balanced_d                   (penalties and beta * hit unchanged)

With equal class counts the weights are 1 and the reward is unchanged; with no judgment of one
class in the batch there is nothing to balance and the rewards are returned unchanged.

Measured (docs/results.md, preset ``quick_rejections``): it does not stop the drift to "no". The
balance holds per judgment, but GRPO compares dialogues and each dialogue's reward is a mean: a
"yes" to another item ends the dialogue at once with nothing right, while "no" keeps the dialogue
going and collects right answers, so per dialogue "no" still earns more when the user agent cannot
tell the target apart.

Counts come from the reward manager's ``reward_extra_info`` (``user/{target,other}_judgments`` and
``user/correct_{target,other}``, :meth:`coars_verl.rewards.interaction.RoleRewards.as_extra_info`);
each dialogue is counted once, through its user-role sample.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from coars_verl.constants import USER_REWARD_KEY

USER_BALANCE_MODES = ("none", "batch")
UNBALANCED_USER_REWARD_KEY = f"{USER_REWARD_KEY}_unbalanced"
_COUNT_KEYS = ("user/target_judgments", "user/other_judgments", "user/correct_target", "user/correct_other")


def class_weights(infos: Sequence[Mapping[str, float]]) -> tuple[float, float] | None:
    """``(w_target, w_other)`` from the batch's judgment counts, or None when a class is absent."""
    targets = sum(float(info["user/target_judgments"]) for info in infos)
    others = sum(float(info["user/other_judgments"]) for info in infos)
    if targets == 0 or others == 0:
        return None
    total = targets + others
    return total / (2 * targets), total / (2 * others)


def balance_user_rewards(
    roles: Sequence[str],
    reward_infos: Sequence[Mapping[str, float]],
    counted: Sequence[bool],
    user_role: str,
) -> tuple[list[dict[str, float]], tuple[float, float] | None]:
    """Each sample's reward info with ``user/reward`` class-balanced over the batch.

    Args:
        roles: ``(B,)`` each sample's role.
        reward_infos: ``(B,)`` each sample's dialogue reward info (both samples of a dialogue carry
            the same one); needs ``user/reward``, ``user/accuracy``, ``user/answered_turns`` and the
            four counts.
        counted: ``(B,)`` False for rows that must not enter the class counts (verl's padding copies).
        user_role: the role whose samples stand for their dialogue in the counts.

    Returns:
        ``(infos, weights)``: new dicts (the inputs are not modified), ``user/reward`` replaced and
        ``user/reward_unbalanced`` kept beside it; ``weights`` is ``(w_target, w_other)``, or None
        when the batch has judgments of one class only (then every reward is unchanged).
    """
    if not (len(roles) == len(reward_infos) == len(counted)):
        raise ValueError(f"{len(roles)} roles, {len(reward_infos)} reward infos and {len(counted)} counted flags")
    for i, info in enumerate(reward_infos):
        missing = [key for key in _COUNT_KEYS if key not in info]
        if missing:
            raise KeyError(f"sample {i}: reward_extra_info lacks {missing} (needed by coars.reward.user_balance=batch)")
    weights = class_weights([info for info, role, keep in zip(reward_infos, roles, counted) if keep and role == user_role])
    balanced = []
    for info in reward_infos:
        info = dict(info)
        if weights is not None:
            answered = float(info["user/answered_turns"])
            w_target, w_other = weights
            term = (w_target * info["user/correct_target"] + w_other * info["user/correct_other"]) / answered if answered else 0.0
            info[UNBALANCED_USER_REWARD_KEY] = info[USER_REWARD_KEY]
            info[USER_REWARD_KEY] = info[USER_REWARD_KEY] - info["user/accuracy"] + term
        balanced.append(info)
    return balanced, weights
