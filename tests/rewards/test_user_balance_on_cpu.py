"""The class-balanced user reward (``coars.reward.user_balance: batch``) against hand-computed values.

Dialogues are played through the real state machine and scored by the real reward, so the counts
are the ones the reward manager sends; each dialogue gives a user sample and a recommender sample
with the same reward info, as in a training batch.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coars_verl.constants import REC_REWARD_KEY, ROLE_RECOMMENDER, ROLE_USER, USER_REWARD_KEY
from coars_verl.rewards.interaction import RewardConfig, compute_role_rewards
from coars_verl.rewards.user_balance import UNBALANCED_USER_REWARD_KEY, balance_user_rewards, class_weights

from test_interaction_reward_on_cpu import GARBAGE_USER, R, U, play


def info(script):
    """The reward info of a dialogue that ends after its last scripted turn."""
    turns = sum(role == ROLE_RECOMMENDER for role, _ in script)
    return compute_role_rewards(play(script, max_turns=turns)).as_extra_info()


def batch(*scripts):
    """Two samples per dialogue (user, recommender), the same info on both."""
    roles, infos = [], []
    for script in scripts:
        dialogue_info = info(script)
        roles += [ROLE_USER, ROLE_RECOMMENDER]
        infos += [dialogue_info, dialogue_info]
    return roles, infos


def test_counts_by_class_in_the_reward_info():
    # target rejected (wrong), then two others: one rejected (right), one accepted (wrong)
    i = info([R("Heat"), U("no"), R("Up"), U("no"), R("Jaws"), U("yes")])
    assert (i["user/target_judgments"], i["user/other_judgments"]) == (1.0, 2.0)
    assert (i["user/correct_target"], i["user/correct_other"]) == (0.0, 1.0)
    # an unparsable answer is a judgment of its item's class, never correct (policy "wrong")
    i = info([R("Up"), GARBAGE_USER, R("Heat"), U("yes")])
    assert (i["user/other_judgments"], i["user/correct_other"]) == (1.0, 0.0)
    assert (i["user/target_judgments"], i["user/correct_target"]) == (1.0, 1.0)


def test_batch_weights_and_rewards_by_hand():
    always_no = [R("Up"), U("no"), R("Heat"), U("no"), R("Jaws"), U("no")]  # 2 others right, target wrong
    right = [R("Up"), U("no"), R("Heat"), U("yes")]  # 1 other right, target right; hit
    roles, infos = batch(always_no, right)
    out, weights = balance_user_rewards(roles, infos, [True] * 4, ROLE_USER)
    # judgments: targets 2 (one per dialogue), others 3 -> J = 5
    assert weights == pytest.approx((5 / 4, 5 / 6))
    # always_no: accuracy 2/3 -> (5/6 * 2) / 3 = 5/9; no hit, no penalty
    assert out[0][USER_REWARD_KEY] == pytest.approx(5 / 9)
    assert out[0][UNBALANCED_USER_REWARD_KEY] == pytest.approx(2 / 3)
    # right: accuracy 1 -> (5/4 + 5/6) / 2 = 25/24, plus beta * hit
    assert out[2][USER_REWARD_KEY] == pytest.approx(25 / 24 + 0.5)
    # both rows of a dialogue carry the balanced info; the recommender's reward is untouched
    assert out[1][USER_REWARD_KEY] == out[0][USER_REWARD_KEY]
    assert [o[REC_REWARD_KEY] for o in out] == [i[REC_REWARD_KEY] for i in infos]
    assert infos[0][USER_REWARD_KEY] == pytest.approx(2 / 3)  # the inputs are not modified


def test_padding_rows_and_recommender_rows_are_not_counted():
    always_no = [R("Up"), U("no"), R("Jaws"), U("no"), R("Heat"), U("no")]
    right = [R("Heat"), U("yes")]
    roles, infos = batch(always_no, right)
    padded_roles, padded_infos = roles + [ROLE_USER], infos + [infos[2]]  # verl's padding copies a real row
    _, weights = balance_user_rewards(padded_roles, padded_infos, [True] * 4 + [False], ROLE_USER)
    # targets 2, others 2 -> weights 1; counting the padding copy (targets 3) would move them
    assert weights == pytest.approx((1.0, 1.0))
    _, counted_padding = balance_user_rewards(padded_roles, padded_infos, [True] * 5, ROLE_USER)
    assert counted_padding != pytest.approx((1.0, 1.0))


def test_equal_class_counts_leave_rewards_unchanged():
    roles, infos = batch([R("Up"), U("yes")], [R("Jaws"), U("no"), R("Heat"), U("no")], [R("Heat"), U("yes")])
    out, weights = balance_user_rewards(roles, infos, [True] * 6, ROLE_USER)  # targets 2, others 2
    assert weights == pytest.approx((1.0, 1.0))
    assert [o[USER_REWARD_KEY] for o in out] == pytest.approx([i[USER_REWARD_KEY] for i in infos])


def test_a_batch_with_one_class_is_left_unchanged():
    roles, infos = batch([R("Up"), U("no")], [R("Jaws"), U("yes")])
    out, weights = balance_user_rewards(roles, infos, [True] * 4, ROLE_USER)
    assert weights is None
    assert [o[USER_REWARD_KEY] for o in out] == [i[USER_REWARD_KEY] for i in infos]
    assert UNBALANCED_USER_REWARD_KEY not in out[0]


def test_missing_counts_are_named():
    roles, infos = batch([R("Heat"), U("yes")])
    del infos[0]["user/correct_other"]
    with pytest.raises(KeyError, match="user/correct_other"):
        balance_user_rewards(roles, infos, [True, True], ROLE_USER)


def test_config_validates_the_mode():
    assert RewardConfig.from_mapping({"user_balance": "batch"}).user_balance == "batch"
    with pytest.raises(ValueError, match="coars.reward.user_balance"):
        RewardConfig(user_balance="class")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4)), min_size=1, max_size=12).filter(
    lambda d: sum(t for t, _ in d) > 0 and sum(o for _, o in d) > 0))
def test_always_yes_and_always_no_earn_the_same_over_the_batch(dialogues):
    """Whatever the class frequencies, a user agent that does not discriminate earns J / 2 summed over
    the batch's judgments either way (unbalanced, the majority answer earns more). Per dialogue the
    two differ (a "yes" ends a dialogue): the module docstring and docs/results.md say what that does."""
    def totals(decision):
        roles, infos = [], []
        for targets, others in dialogues:
            counts = {"user/target_judgments": targets, "user/other_judgments": others,
                      "user/correct_target": targets if decision == "yes" else 0,
                      "user/correct_other": others if decision == "no" else 0}
            answered = targets + others
            accuracy = (counts["user/correct_target"] + counts["user/correct_other"]) / answered if answered else 0.0
            roles.append(ROLE_USER)
            infos.append({**counts, "user/answered_turns": answered, "user/accuracy": accuracy, USER_REWARD_KEY: accuracy})
        out, _ = balance_user_rewards(roles, infos, [True] * len(roles), ROLE_USER)
        return sum(o[USER_REWARD_KEY] * i["user/answered_turns"] for o, i in zip(out, infos))

    judgments = sum(t + o for t, o in dialogues)
    assert totals("yes") == pytest.approx(judgments / 2)
    assert totals("no") == pytest.approx(judgments / 2)
    assert class_weights([{"user/target_judgments": t, "user/other_judgments": o} for t, o in dialogues]) is not None
