"""Evaluation metrics against hand-computed cases; random-baseline expectations against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from coars_verl.dialogue.state import Dialogue, DialogueConfig
from coars_verl.eval.baselines import popularity_pick
from coars_verl.eval.metrics import (
    Counts,
    Judgment,
    expected_random_hit_at_1,
    expected_random_prf,
    expected_random_user_sim,
    precision_recall_f1,
    recommendation_metrics,
    user_sim_metrics,
)

from eval_fakes import make_extra_info


def summary(turns, valid, hit, k_hit, end="max_turns", answered=0, user_errors=0):
    return {"turns": turns, "rec_valid": valid, "hit": hit, "k_hit": k_hit, "end_reason": end,
            "user_answered_turns": answered, "user_format_errors": user_errors}


def play(texts, candidates=("Alien", "Heat", "Up"), target="Up", max_turns=3):
    """A real dialogue summary from scripted answers (recommender and user alternating as the dialogue asks)."""
    dialogue = Dialogue.from_extra_info(make_extra_info(0, "u", list(candidates), target), DialogueConfig(max_turns=max_turns))
    answers = iter(texts)
    while not dialogue.done:
        dialogue.submit(dialogue.next_role(), next(answers))
    return dialogue.transcript.summary()


# --------------------------------------------------------------------------------------------------
# Recommendation


def test_recommendation_hand_computed():
    dialogues = [
        summary(2, [False, True], True, 2, "accepted", answered=1),
        summary(1, [True], True, 1, "accepted", answered=1),
        summary(3, [False, False, False], False, 0),
        summary(3, [True, True, True], False, 1, answered=3, user_errors=1),  # target at turn 1, rejected
    ]
    m = recommendation_metrics(dialogues)
    assert m["dialogues"] == 4
    assert m["hit_at_1"] == pytest.approx(2 / 4)
    assert m["hit_at_1_turn1"] == pytest.approx(2 / 4)
    assert m["target_recommended"] == pytest.approx(3 / 4)
    assert m["valid_turns"] == 5 and m["rec_turns"] == 9
    assert m["valid_ratio"] == pytest.approx(5 / 9)
    assert m["valid_ratio_mean"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert m["turns_mean"] == pytest.approx(9 / 4)
    assert m["accept_rate"] == pytest.approx(0.5)
    assert m["user_format_error_rate"] == pytest.approx(1 / 5)


def test_recommendation_from_real_dialogues_with_invalid_answers():
    # turn 1: not a candidate; turn 2: valid non-target, user's answer unparsable; turn 3: the target, accepted
    hit = play(["Item: Jaws", "Item: Alien", "I don't know", "Reason: fits.\nItem: 3", "Decision: yes"])
    # every answer invalid
    miss = play(["nothing", "Item: 99", "Item:"])
    # target first, rejected, then a non-target accepted: final item is not the target
    late = play(["Item: Up", "Decision: no", "Item: Heat", "Decision: yes"])
    m = recommendation_metrics([hit, miss, late])
    assert (hit["hit"], hit["k_hit"], hit["turns"]) == (True, 3, 3)
    assert (late["hit"], late["k_hit"], late["turns"]) == (False, 1, 2)
    assert m["hit_at_1"] == pytest.approx(1 / 3)
    assert m["hit_at_1_turn1"] == pytest.approx(1 / 3)
    assert m["target_recommended"] == pytest.approx(2 / 3)
    assert m["valid_ratio"] == pytest.approx((2 + 0 + 2) / (3 + 3 + 2))
    assert m["valid_ratio_mean"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m["turns_mean"] == pytest.approx(8 / 3)
    assert m["user_format_error_rate"] == pytest.approx(1 / 4)  # 4 user answers, one unparsable


def test_recommendation_empty_and_zero_turn_dialogues():
    empty = recommendation_metrics([])
    assert empty["dialogues"] == 0 and empty["rec_turns"] == 0
    assert empty["hit_at_1"] is None and empty["valid_ratio"] is None and empty["turns_mean"] is None
    # a dialogue cut before any turn (budget): counted in Hit@1 and turns, not in the per-dialogue ratio
    m = recommendation_metrics([summary(0, [], False, 0, "budget"), summary(1, [True], True, 1, "accepted", answered=1)])
    assert m["hit_at_1"] == 0.5 and m["turns_mean"] == 0.5
    assert m["valid_ratio"] == 1.0 and m["valid_ratio_mean"] == 1.0
    only_cut = recommendation_metrics([summary(0, [], False, 0, "budget")])
    assert only_cut["valid_ratio"] is None and only_cut["valid_ratio_mean"] is None and only_cut["hit_at_1"] == 0.0


def test_recommendation_rejects_inconsistent_summary():
    with pytest.raises(ValueError, match="rec_valid"):
        recommendation_metrics([summary(2, [True], False, 0)])


# --------------------------------------------------------------------------------------------------
# User simulation


def J(labels, decisions):
    return [Judgment(bool(l), d) for l, d in zip(labels, decisions)]


def test_user_sim_hand_computed_micro_and_macro():
    users = [
        J([1, 1, 0, 0], [True, False, True, None]),  # TP1 FN1 FP1 TN1 -> P .5 R .5 F1 .5
        J([1, 0], [False, False]),                   # no predicted positives -> P 0 (convention), R 0, F1 0
        J([1, 1, 1], [True, True, None]),            # TP2 FN1 -> P 1 R 2/3 F1 .8
        [],                                          # no items: left out of the macro averages
    ]
    m = user_sim_metrics(users)
    assert (m["users"], m["users_without_items"], m["judgments"], m["positives"]) == (4, 1, 9, 6)
    assert m["format_errors"] == 2 and m["format_error_rate"] == pytest.approx(2 / 9)
    assert m["yes_rate"] == pytest.approx(4 / 9)
    assert m["accuracy"] == pytest.approx(5 / 9)
    assert m["positive_rate"] == pytest.approx(6 / 9)
    # micro: TP 3, FP 1, FN 3
    assert m["precision_micro"] == pytest.approx(3 / 4)
    assert m["recall_micro"] == pytest.approx(3 / 6)
    assert m["f1_micro"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 3))
    assert m["precision_macro"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["recall_macro"] == pytest.approx((0.5 + 0 + 2 / 3) / 3)
    assert m["f1_macro"] == pytest.approx((0.5 + 0 + 0.8) / 3)


def test_zero_division_convention():
    assert precision_recall_f1(Counts()) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(Counts(tp=0, fp=0, fn=2, tn=1)) == (0.0, 0.0, 0.0)   # never says yes
    assert precision_recall_f1(Counts(tp=0, fp=2, fn=0, tn=0)) == (0.0, 0.0, 0.0)   # no positives
    assert precision_recall_f1(Counts(tp=1, fp=0, fn=0, tn=5)) == (1.0, 1.0, 1.0)
    # a user without positives who says no everywhere scores 0 and still counts in the macro average
    m = user_sim_metrics([J([0, 0], [False, False]), J([1], [True])])
    assert m["f1_macro"] == pytest.approx(0.5) and m["precision_macro"] == pytest.approx(0.5)
    assert m["accuracy"] == 1.0


def test_user_sim_empty():
    for users in ([], [[], []]):
        m = user_sim_metrics(users)
        assert m["judgments"] == 0 and m["f1_micro"] is None and m["f1_macro"] is None
    assert user_sim_metrics([[], []])["users_without_items"] == 2


def test_unparsable_counts_as_no():
    parsed_no = user_sim_metrics([J([1, 0], [False, False])])
    unparsable = user_sim_metrics([J([1, 0], [None, None])])
    for key in ("precision_micro", "recall_micro", "f1_micro", "accuracy", "yes_rate"):
        assert parsed_no[key] == unparsable[key]
    assert unparsable["format_errors"] == 2 and parsed_no["format_errors"] == 0


# --------------------------------------------------------------------------------------------------
# Random-baseline expectations


def test_expected_random_hit_at_1():
    assert expected_random_hit_at_1([20, 10, 4]) == pytest.approx((1 / 20 + 1 / 10 + 1 / 4) / 3)
    assert expected_random_hit_at_1([]) is None
    with pytest.raises(ValueError):
        expected_random_hit_at_1([0])


def brute_force_expectation(users_labels, p):
    """Average user_sim_metrics over every yes/no assignment of all items, weighted by its probability."""
    flat = [(u, l) for u, labels in enumerate(users_labels) for l in labels]
    total = {}
    for answers in itertools.product([True, False], repeat=len(flat)):
        weight = math.prod(p if a else 1 - p for a in answers)
        users = [[] for _ in users_labels]
        for (u, label), answer in zip(flat, answers):
            users[u].append(Judgment(label, answer))
        for key, value in user_sim_metrics(users).items():
            total[key] = total.get(key, 0.0) + weight * value
    return total


@pytest.mark.parametrize("p", [0.5, 0.3])
@pytest.mark.parametrize(
    "users_labels",
    [[[True, False]], [[True, True, False], [False, True], [True]], [[False, False, True, True, False]], [[False], [True, True]]],
)
def test_expected_random_user_sim_is_exact(users_labels, p):
    exact = expected_random_user_sim(users_labels, p)
    brute = brute_force_expectation(users_labels, p)
    for key in ("accuracy", "precision_micro", "recall_micro", "f1_micro", "precision_macro", "recall_macro", "f1_macro", "yes_rate", "positive_rate"):
        assert exact[key] == pytest.approx(brute[key], abs=1e-12), key


def test_expected_random_prf_large_set_is_close_to_the_textbook_values():
    e = expected_random_prf(470, 470, 0.5)
    assert e["precision"] == pytest.approx(0.5)  # positive rate (the (1-p)^n term vanishes)
    assert e["recall"] == 0.5
    assert e["f1"] == pytest.approx(0.5, abs=2e-3)
    assert e["accuracy"] == 0.5
    assert expected_random_prf(0, 3)["recall"] == 0.0 and expected_random_prf(0, 3)["f1"] == 0.0


def test_seeded_random_simulation_agrees_with_expectation():
    rng = np.random.default_rng(0)
    labels = [[i % 2 == 0 for i in range(10)] for _ in range(400)]
    simulated = user_sim_metrics([[Judgment(l, bool(rng.random() < 0.5)) for l in user] for user in labels])
    exact = expected_random_user_sim(labels)
    for key in ("precision_micro", "recall_micro", "f1_micro", "f1_macro"):
        assert simulated[key] == pytest.approx(exact[key], abs=0.03)


# --------------------------------------------------------------------------------------------------
# Popularity ties


def test_popularity_pick_and_ties():
    counts = {"10": 5, "2": 5, "7": 1}
    assert popularity_pick(["7", "10", "2"], counts) == 2       # tie 10 / 2: the smaller id (numerically)
    assert popularity_pick(["7", "10"], counts) == 1
    assert popularity_pick(["b", "a", "c"], {"a": 1, "b": 1}) == 1  # text ids: "a" < "b"; "c" unknown -> 0
    assert popularity_pick(["x", "y"], {}) == 0                  # nobody interacted: smallest id
    assert popularity_pick(["12", "9"], {"12": 1, "9": 1}) == 1  # 9 < 12 numerically, not as text
    with pytest.raises(ValueError):
        popularity_pick([], counts)
