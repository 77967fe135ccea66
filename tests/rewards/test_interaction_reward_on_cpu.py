"""The interaction reward against hand-computed values, one test per branch of spec section 3.

Defaults: gamma 0.9, beta 0.5, format penalty 0.1. Dialogues are played through the real state
machine so that the summaries are exactly what the agent loop stores.
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coars_verl.constants import REC_REWARD_KEY, ROLE_RECOMMENDER, ROLE_USER, USER_REWARD_KEY
from coars_verl.dialogue.state import Dialogue, DialogueConfig, DialogueSample
from coars_verl.dialogue.transcript import Transcript, TurnRecord
from coars_verl.rewards.interaction import RewardConfig, RoleRewards, compute_role_rewards

SAMPLE = DialogueSample(
    user_id="u",
    history_titles=("Alien",),
    candidate_titles=("The Matrix", "Toy Story", "Heat", "Up", "Jaws"),
    candidate_item_ids=("m", "t", "h", "u", "j"),
    target_title="Heat",
    target_item_id="h",
)


def play(script, max_turns=5, stop_early=False):
    """Play (role, text) steps; returns the summary. ``stop_early`` ends with finish_early("budget")."""
    dialogue = Dialogue(SAMPLE, DialogueConfig(max_turns=max_turns))
    for role, text in script:
        dialogue.submit(role, text)
    if stop_early:
        dialogue.finish_early("budget")
    assert dialogue.done
    return dialogue.transcript.summary()


def R(item):
    return (ROLE_RECOMMENDER, f"Reason: r\nItem: {item}")


def U(decision):
    return (ROLE_USER, f"Reason: u\nDecision: {decision}")


GARBAGE_REC = (ROLE_RECOMMENDER, "I cannot decide.")
GARBAGE_USER = (ROLE_USER, "Hmm, well.")


def rewards(summary, **config):
    return compute_role_rewards(summary, RewardConfig(**config))


def test_hit_at_turn_one():
    r = rewards(play([R("Heat"), U("yes")]))
    assert r.hit and r.k_hit == 1 and r.target_recommended
    assert r.rec == pytest.approx(1.0 + 0.5)  # 0.9**0 + beta
    assert r.user == pytest.approx(1.0 + 0.5)  # 1 correct of 1 + beta
    assert (r.turns, r.answered_turns, r.valid_ratio, r.user_accuracy) == (1, 1, 1.0, 1.0)


def test_hit_at_turn_three():
    r = rewards(play([R("Up"), U("no"), R("Jaws"), U("no"), R("Heat"), U("yes")]))
    assert r.hit and r.k_hit == 3
    assert r.rec == pytest.approx(0.9**2 + 0.5)  # 1.31
    assert r.user == pytest.approx(3 / 3 + 0.5)


def test_gamma_and_beta_are_configurable():
    summary = play([R("Up"), U("no"), R("Jaws"), U("no"), R("Heat"), U("yes")])
    r = rewards(summary, gamma=0.5, beta=2.0)
    assert r.rec == pytest.approx(0.25 + 2.0)
    assert r.user == pytest.approx(1.0 + 2.0)


def test_false_reject_of_the_target_then_another_item():
    # Turn 1: target rejected (false reject); turn 2: Up rejected. Final item Up: no hit,
    # but the target was recommended at turn 1.
    summary = play([R("Heat"), U("no"), R("Up"), U("no")], max_turns=2)
    r = rewards(summary)
    assert not r.hit and r.k_hit == 1 and r.false_rejects == 1
    assert r.rec == pytest.approx(1.0)  # 0.9**0, no coupling bonus
    assert r.user == pytest.approx(0.5)  # 1 correct of 2
    weighted = rewards(summary, false_reject_weight=0.2)
    assert weighted.user == pytest.approx(0.5 - 0.2)
    assert weighted.rec == pytest.approx(1.0)


def test_false_reject_of_the_target_at_the_last_turn_still_hits():
    # The final item is the last valid recommendation, whatever the user answered: Hit@1 = 1.
    r = rewards(play([R("Up"), U("no"), R("Heat"), U("no")], max_turns=2))
    assert r.hit and r.k_hit == 2 and r.false_rejects == 1
    assert r.rec == pytest.approx(0.9 + 0.5)
    assert r.user == pytest.approx(1 / 2 + 0.5)


def test_false_accept():
    summary = play([R("Up"), U("yes")])
    r = rewards(summary)
    assert not r.hit and r.k_hit == 0 and r.false_accepts == 1
    assert r.rec == pytest.approx(0.0)
    assert r.user == pytest.approx(0.0)
    assert rewards(summary, false_accept_weight=0.3).user == pytest.approx(-0.3)


def test_invalid_items_cost_the_recommender_only():
    # Turn 1 garbage, turn 2 Up rejected, turn 3 Up again (repeated: invalid), turn 4 Heat accepted.
    summary = play([GARBAGE_REC, R("Up"), U("no"), R("Up"), R("Heat"), U("yes")])
    r = rewards(summary)
    assert r.rec_format_errors == 2 and r.valid_ratio == pytest.approx(0.5) and r.k_hit == 4
    assert r.rec == pytest.approx(0.9**3 - 0.1 * 2 + 0.5)  # 1.029
    assert r.answered_turns == 2 and r.user == pytest.approx(1.0 + 0.5)
    assert rewards(summary, format_penalty=0.0).rec == pytest.approx(0.9**3 + 0.5)


def test_no_hit():
    r = rewards(play([R("Up"), U("no"), R("Jaws"), U("no"), R("Toy Story"), U("no")], max_turns=3))
    assert not r.hit and r.k_hit == 0 and not r.target_recommended
    assert r.rec == pytest.approx(0.0)
    assert r.user == pytest.approx(1.0)  # three correct rejections, no coupling bonus


# Turn 1: Up, unparsable; turn 2: Heat (target), unparsable; turn 3: Toy Story, "no".
FORMAT_ERROR_SCRIPT = [R("Up"), GARBAGE_USER, R("Heat"), GARBAGE_USER, R("Toy Story"), U("no")]


def test_user_format_errors_scored_as_wrong_by_default():
    r = rewards(play(FORMAT_ERROR_SCRIPT, max_turns=3))
    assert not r.hit and r.k_hit == 2 and r.user_format_errors == 2
    assert r.rec == pytest.approx(0.9)
    assert r.answered_turns == 3 and r.user_accuracy == pytest.approx(1 / 3)
    assert r.false_rejects == 0  # a non-answer is a format error, not a false reject
    assert r.user == pytest.approx(1 / 3 - 0.1 * 2)


def test_user_format_errors_scored_as_rejections():
    r = rewards(play(FORMAT_ERROR_SCRIPT, max_turns=3), unparsable_user_answer="reject", false_reject_weight=0.5)
    assert r.answered_turns == 3 and r.user_accuracy == pytest.approx(2 / 3)
    assert r.false_rejects == 1
    assert r.user == pytest.approx(2 / 3 - 0.5 - 0.1 * 2)


def test_user_format_errors_skipped():
    r = rewards(play(FORMAT_ERROR_SCRIPT, max_turns=3), unparsable_user_answer="skip")
    assert r.answered_turns == 1 and r.user_accuracy == pytest.approx(1.0)
    assert r.user == pytest.approx(1.0 - 0.1 * 2)


def test_zero_answered_turns_all_invalid():
    r = rewards(play([GARBAGE_REC] * 5))
    assert r.turns == 5 and r.answered_turns == 0 and r.valid_ratio == 0.0
    assert r.rec == pytest.approx(-0.1 * 5)
    assert r.user == pytest.approx(0.0)
    assert not r.hit and r.k_hit == 0


def test_zero_answered_turns_cut_by_the_budget_after_a_target_recommendation():
    r = rewards(play([R("Heat")], stop_early=True))
    assert r.answered_turns == 0 and r.hit and r.k_hit == 1
    assert r.rec == pytest.approx(1.0 + 0.5)
    assert r.user == pytest.approx(0.0 + 0.5)  # no answered turn: r_user = 0, plus the shared outcome


def test_empty_dialogue():
    r = rewards(play([], stop_early=True))
    assert (r.rec, r.user, r.turns, r.valid_ratio, r.hit, r.k_hit) == (0.0, 0.0, 0, 0.0, False, 0)


def test_reward_recomputes_derived_fields_from_turn_lists():
    summary = play([R("Up"), U("no"), R("Heat"), U("yes")])
    tampered = dict(summary, hit=False, k_hit=0, valid_ratio=0.0)
    assert rewards(tampered) == rewards(summary)


def test_hit_and_k_hit_are_the_transcripts_and_count_only_a_valid_target():
    # a hand-edited summary: the invalid first turn claims the target; only a valid recommendation counts
    summary = play([GARBAGE_REC, R("Heat"), U("yes")])
    summary = dict(summary, is_target=[True, True])
    transcript = Transcript.from_summary(summary)
    r = rewards(summary)
    assert (r.k_hit, r.hit) == (transcript.k_hit, transcript.hit) == (2, True)
    assert r.rec == pytest.approx(0.9 - 0.1 + 0.5)


def test_summary_after_json_and_tuple_round_trip():
    summary = play([GARBAGE_REC, R("Heat"), GARBAGE_USER, R("Up"), U("yes")])
    via_json = json.loads(json.dumps(summary))
    as_tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in summary.items()}  # like numpy arrays
    assert rewards(via_json) == rewards(summary) == rewards(as_tuples)


def test_as_extra_info():
    info = rewards(play([R("Up"), U("no"), R("Heat"), U("yes")])).as_extra_info()
    assert all(isinstance(v, float) for v in info.values())
    assert info[REC_REWARD_KEY] == pytest.approx(0.9 + 0.5)
    assert info[USER_REWARD_KEY] == pytest.approx(1.5)
    assert info["hit"] == 1.0 and info["k_hit"] == 2.0 and info["turns"] == 2.0
    assert info["rec/valid_ratio"] == 1.0 and info["user/accuracy"] == 1.0
    assert {"user/false_accepts", "user/false_rejects", "user/format_errors", "rec/format_errors",
            "user/answered_turns", "rec/target_recommended"} <= set(info)


# ---- configuration and malformed input


def test_reward_config_from_mapping():
    config = RewardConfig.from_mapping({"gamma": 1, "beta": 0, "unparsable_user_answer": "skip"})
    assert config.gamma == 1.0 and isinstance(config.gamma, float) and config.beta == 0.0
    assert RewardConfig.from_mapping(None) == RewardConfig()
    with pytest.raises(ValueError, match="gama"):
        RewardConfig.from_mapping({"gama": 0.9})


@pytest.mark.parametrize(
    "bad",
    [{"gamma": 1.5}, {"gamma": -0.1}, {"beta": float("nan")}, {"format_penalty": "0.1"}, {"beta": True},
     {"unparsable_user_answer": "ignore"}],
)
def test_reward_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        RewardConfig(**bad)


@pytest.mark.parametrize(
    "summary",
    [
        {},
        {"rec_valid": [True], "is_target": [True], "user_decisions": [1]},
        {"rec_valid": [True], "is_target": [True], "user_decisions": [1, 0], "user_errors": [""]},
        {"rec_valid": [True], "is_target": [True], "user_decisions": [7], "user_errors": [""]},
        "not a mapping",
    ],
)
def test_malformed_summaries_raise_value_error(summary):
    with pytest.raises(ValueError):
        compute_role_rewards(summary)


# ---- properties

TURN = st.tuples(st.booleans(), st.booleans(), st.sampled_from([-1, 0, 1]), st.booleans())


@settings(max_examples=200, deadline=None)
@given(
    turns=st.lists(TURN, max_size=8),
    gamma=st.floats(0, 1),
    beta=st.floats(0, 2),
    penalty=st.floats(0, 1),
    wa=st.floats(0, 1),
    wr=st.floats(0, 1),
    policy=st.sampled_from(["wrong", "reject", "skip"]),
)
def test_rewards_are_bounded(turns, gamma, beta, penalty, wa, wr, policy):
    records = tuple(
        TurnRecord(turn=k + 1, rec_raw="", rec_item_index=0 if valid else -1, rec_item_title="T" if valid else "",
                   rec_item_id="", rec_reason="", rec_error="" if valid else "no_item", rec_problem="", valid=valid,
                   is_target=valid and target, user_decision=decision if valid else -1,
                   user_error="missing_decision" if error and valid and decision == 0 else "")
        for k, (valid, target, decision, error) in enumerate(turns)
    )
    summary = Transcript("u", "T", "t", max_turns=8, turns=records, end_reason="max_turns").summary()
    config = RewardConfig(gamma, beta, penalty, wa, wr, policy)
    r = compute_role_rewards(summary, config)
    assert isinstance(r, RoleRewards)
    n = len(turns)
    assert -penalty * n - 1e-9 <= r.rec <= 1.0 + beta + 1e-9
    assert -(penalty + wa + wr) * n - 1e-9 <= r.user <= 1.0 + beta + 1e-9
    assert 0.0 <= r.user_accuracy <= 1.0 and 0.0 <= r.valid_ratio <= 1.0
    assert r.answered_turns <= n and r.k_hit <= n
    assert (r.k_hit > 0) == r.target_recommended
    assert not r.hit or r.target_recommended


def test_outcome_mode_gives_both_roles_only_the_hit():
    hit = rewards(play([GARBAGE_REC, R("Up"), U("no"), R("Heat"), U("yes")]), mode="outcome")
    assert (hit.rec, hit.user) == (1.0, 1.0) and hit.rec_format_errors == 1  # no format penalty, no discount
    false_accept = rewards(play([R("Up"), U("yes")]), mode="outcome")
    assert (false_accept.rec, false_accept.user) == (0.0, 0.0) and false_accept.false_accepts == 1
    miss = rewards(play([R("Up"), U("no"), R("Jaws"), U("no")], max_turns=2), mode="outcome")
    assert (miss.rec, miss.user) == (0.0, 0.0) and miss.user_accuracy == 1.0
    with pytest.raises(ValueError, match="coars.reward.mode"):
        RewardConfig(mode="judge")


@pytest.mark.parametrize("name", ["beta", "format_penalty", "false_accept_weight", "false_reject_weight"])
def test_negative_weights_and_penalties_are_refused_by_name(name):
    with pytest.raises(ValueError, match=f"coars.reward.{name}: expected a value >= 0"):
        RewardConfig(**{name: -0.1})
    assert getattr(RewardConfig(**{name: 0.0}), name) == 0.0
