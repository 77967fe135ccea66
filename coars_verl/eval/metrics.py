"""Evaluation metrics (coars_verl/eval/README.md, "What is measured"), as pure functions over plain Python data.

Recommendation (over dialogue summaries, ``Transcript.summary()``):

* ``hit_at_1``: share of dialogues whose final item (the last valid recommendation) is the target.
* ``hit_at_1_turn1``: share of dialogues whose FIRST turn's recommendation is valid and is the target
  (``k_hit == 1``): the Hit@1 a single-turn recommender would have had.
* ``target_recommended``: share of dialogues in which the target was validly recommended at any turn.
* ``valid_ratio``: valid recommender turns / all recommender turns, pooled over dialogues;
  ``valid_ratio_mean``: the mean of the per-dialogue ratios, over dialogues with at least one turn.
* ``turns_mean``: mean number of recorded turns; ``accept_rate``: share of dialogues the user accepted.

User simulation: one :class:`Judgment` per (user, item) question, ``decision`` True (yes), False
(no) or None (unparsable). An unparsable answer counts as "no" and as a format error.

* micro: TP, FP, FN pooled over every judgment, then precision, recall, F1;
* macro: precision, recall, F1 per user, then averaged over users (macro F1 is the mean of the
  per-user F1, not the F1 of the mean precision and recall).

**Zero-division convention** (as scikit-learn's ``zero_division=0``): a ratio whose denominator is 0
is 0.0, and the user stays in the macro average. A user with no predicted positives has precision
0 (an agent that always says no is not rewarded for it); a user with no positives has recall 0;
F1 = 2TP / (2TP + FP + FN), 0 when that denominator is 0. Users with no judgments at all are left
out of the macro averages (and counted in ``users_without_items``). With no data at all, every
ratio is ``None`` (JSON ``null``).

Baseline expectations are exact (no sampling): see :func:`expected_random_hit_at_1` and
:func:`expected_random_user_sim`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

END_ACCEPTED = "accepted"

RECOMMENDATION_KEYS = (
    "dialogues",
    "hit_at_1",
    "hit_at_1_turn1",
    "target_recommended",
    "valid_ratio",
    "valid_ratio_mean",
    "valid_turns",
    "rec_turns",
    "turns_mean",
    "accept_rate",
    "user_format_error_rate",
)
USER_SIM_KEYS = (
    "users",
    "users_without_items",
    "judgments",
    "positives",
    "positive_rate",
    "yes_rate",
    "format_errors",
    "format_error_rate",
    "accuracy",
    "precision_micro",
    "recall_micro",
    "f1_micro",
    "precision_macro",
    "recall_macro",
    "f1_macro",
)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when the denominator is 0 (the zero-division convention)."""
    return float(numerator) / float(denominator) if denominator else 0.0


def _mean(values: Sequence[float]) -> Optional[float]:
    return float(sum(values)) / len(values) if values else None


# --------------------------------------------------------------------------------------------------
# Recommendation


def recommendation_metrics(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Hit@1, ValidRatio, mean turns, Hit@1 at turn 1 (and a few more) over dialogue summaries.

    A summary needs ``hit``, ``k_hit``, ``turns`` and ``rec_valid`` (per-turn list); ``end_reason``,
    ``user_format_errors`` and ``user_answered_turns`` are used when present.
    """
    summaries = list(summaries)
    n = len(summaries)
    valid_turns = rec_turns = user_errors = user_answers = 0
    per_dialogue_ratio: list[float] = []
    for summary in summaries:
        flags = [bool(v) for v in summary.get("rec_valid", [])]
        if len(flags) != int(summary["turns"]):
            raise ValueError(f"dialogue summary: {len(flags)} rec_valid entries for {summary['turns']} turns")
        valid_turns += sum(flags)
        rec_turns += len(flags)
        if flags:
            per_dialogue_ratio.append(sum(flags) / len(flags))
        user_errors += int(summary.get("user_format_errors", 0))
        user_answers += int(summary.get("user_answered_turns", 0))
    if n == 0:
        return {key: (0 if key in ("dialogues", "valid_turns", "rec_turns") else None) for key in RECOMMENDATION_KEYS}
    return {
        "dialogues": n,
        "hit_at_1": sum(bool(s["hit"]) for s in summaries) / n,
        "hit_at_1_turn1": sum(int(s["k_hit"]) == 1 for s in summaries) / n,
        "target_recommended": sum(int(s["k_hit"]) > 0 for s in summaries) / n,
        "valid_ratio": valid_turns / rec_turns if rec_turns else None,
        "valid_ratio_mean": _mean(per_dialogue_ratio),
        "valid_turns": valid_turns,
        "rec_turns": rec_turns,
        "turns_mean": sum(int(s["turns"]) for s in summaries) / n,
        "accept_rate": sum(s.get("end_reason") == END_ACCEPTED for s in summaries) / n,
        "user_format_error_rate": user_errors / user_answers if user_answers else None,
    }


# --------------------------------------------------------------------------------------------------
# User simulation


@dataclass(frozen=True)
class Judgment:
    """One user-simulation question: the item's ground truth and the agent's decision."""

    label: bool
    """True: the item is one of the user's held-out future items (a positive)."""
    decision: Optional[bool]
    """True yes, False no, None unparsable (counted as no and as a format error)."""

    @property
    def predicted(self) -> bool:
        return self.decision is True


@dataclass(frozen=True)
class Counts:
    """The user agent's confusion matrix over judged items (a positive: an item the user liked)."""

    tp: int = 0
    """Said yes to a liked item."""
    fp: int = 0
    """Said yes to an item the user did not like."""
    fn: int = 0
    """Said no (or answered unparsably) to a liked item."""
    tn: int = 0
    """Said no (or answered unparsably) to an item the user did not like."""

    @classmethod
    def of(cls, judgments: Iterable[Judgment]) -> "Counts":
        tp = fp = fn = tn = 0
        for j in judgments:
            if j.predicted and j.label:
                tp += 1
            elif j.predicted:
                fp += 1
            elif j.label:
                fn += 1
            else:
                tn += 1
        return cls(tp, fp, fn, tn)

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def precision_recall_f1(counts: Counts) -> tuple[float, float, float]:
    """(precision, recall, F1) with the zero-division convention of the module docstring."""
    precision = _ratio(counts.tp, counts.tp + counts.fp)
    recall = _ratio(counts.tp, counts.tp + counts.fn)
    f1 = _ratio(2 * counts.tp, 2 * counts.tp + counts.fp + counts.fn)
    return precision, recall, f1


def user_sim_metrics(users: Iterable[Sequence[Judgment]]) -> dict[str, Any]:
    """Precision, recall, F1 (micro and per-user macro) and friends; one judgment list per user."""
    users = [list(judgments) for judgments in users]
    judged = [judgments for judgments in users if judgments]
    per_user = [Counts.of(judgments) for judgments in judged]
    pooled = sum(per_user, Counts())
    every = [j for judgments in judged for j in judgments]
    out: dict[str, Any] = {
        "users": len(users),
        "users_without_items": len(users) - len(judged),
        "judgments": len(every),
        "positives": sum(j.label for j in every),
        "format_errors": sum(j.decision is None for j in every),
    }
    if not every:
        out.update({key: None for key in USER_SIM_KEYS if key not in out})
        return out
    n = len(every)
    micro = precision_recall_f1(pooled)
    macro = [precision_recall_f1(c) for c in per_user]
    out.update(
        {
            "positive_rate": out["positives"] / n,
            "yes_rate": (pooled.tp + pooled.fp) / n,
            "format_error_rate": out["format_errors"] / n,
            "accuracy": (pooled.tp + pooled.tn) / n,
            "precision_micro": micro[0],
            "recall_micro": micro[1],
            "f1_micro": micro[2],
            "precision_macro": _mean([m[0] for m in macro]),
            "recall_macro": _mean([m[1] for m in macro]),
            "f1_macro": _mean([m[2] for m in macro]),
        }
    )
    return {key: out[key] for key in USER_SIM_KEYS}


# --------------------------------------------------------------------------------------------------
# Exact expectations of the random baselines


def expected_random_hit_at_1(candidate_counts: Iterable[int]) -> Optional[float]:
    """E[Hit@1] of recommending one candidate uniformly at random: the mean of 1/|C| (None if no samples)."""
    counts = [int(c) for c in candidate_counts]
    if any(c < 1 for c in counts):
        raise ValueError("every sample needs at least one candidate")
    return _mean([1.0 / c for c in counts])


def _binomial_pmf(n: int, p: float) -> list[float]:
    """P(K = k), k = 0..n, for K ~ Binomial(n, p); in log space, so large n does not overflow."""
    if p <= 0.0 or p >= 1.0:
        return [1.0 if k == (n if p >= 1.0 else 0) else 0.0 for k in range(n + 1)]
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return [math.exp(log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q) for k in range(n + 1)]


def expected_random_prf(positives: int, negatives: int, p: float = 0.5) -> dict[str, float]:
    """Exact E[precision], E[recall], E[F1], E[accuracy] when each of the items is answered yes with
    probability ``p`` independently, under the zero-division convention.

    Given K = TP + FP yes answers, TP is hypergeometric with mean K P / n (n = P + N), hence:
    E[precision] = P/n (1 - (1-p)^n); E[recall] = p (0 if P = 0);
    E[F1] = E[2 TP / (K + P)] = sum_k Pr(K = k) 2 k P / (n (k + P)); E[accuracy] = p P/n + (1-p) N/n.
    """
    if positives < 0 or negatives < 0:
        raise ValueError("counts must be >= 0")
    n = positives + negatives
    if n == 0:
        raise ValueError("no items")
    rate = positives / n
    pmf = _binomial_pmf(n, p)
    f1 = 0.0
    if positives:
        f1 = sum(prob * 2.0 * k * positives / (n * (k + positives)) for k, prob in enumerate(pmf))
    return {
        "precision": rate * (1.0 - (1.0 - p) ** n),
        "recall": p if positives else 0.0,
        "f1": f1,
        "accuracy": p * rate + (1.0 - p) * (1.0 - rate),
    }


def expected_random_user_sim(users_labels: Iterable[Sequence[bool]], p: float = 0.5) -> dict[str, Any]:
    """Exact expected user-simulation metrics of answering yes with probability ``p`` (same keys as
    :func:`user_sim_metrics`; format errors are 0). Micro pools every judgment into one set."""
    labels = [[bool(x) for x in user] for user in users_labels]
    judged = [user for user in labels if user]
    positives = sum(sum(user) for user in judged)
    total = sum(len(user) for user in judged)
    out: dict[str, Any] = {
        "users": len(labels),
        "users_without_items": len(labels) - len(judged),
        "judgments": total,
        "positives": positives,
        "format_errors": 0,
    }
    if not total:
        out.update({key: None for key in USER_SIM_KEYS if key not in out})
        return out
    micro = expected_random_prf(positives, total - positives, p)
    macro = [expected_random_prf(sum(user), len(user) - sum(user), p) for user in judged]
    out.update(
        {
            "positive_rate": positives / total,
            "yes_rate": p,
            "format_error_rate": 0.0,
            "accuracy": micro["accuracy"],
            "precision_micro": micro["precision"],
            "recall_micro": micro["recall"],
            "f1_micro": micro["f1"],
            "precision_macro": _mean([m["precision"] for m in macro]),
            "recall_macro": _mean([m["recall"] for m in macro]),
            "f1_macro": _mean([m["f1"] for m in macro]),
        }
    )
    return {key: out[key] for key in USER_SIM_KEYS}
