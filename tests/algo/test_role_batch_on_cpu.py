"""The per-sample steps of a training batch on hand-built batches, with different values per role.

Each test names the wrong trainer it catches: roles' rewards swapped, the teacher and student
swapped (the sign of the credit), teacher log-probs shifted by one token, a reward on the wrong
token.
"""

import pytest
import torch

from coars_verl.algo.role_batch import batch_reward_infos, role_scores, scores_on_last_token, self_distill_delta
from coars_verl.constants import REC_REWARD_KEY, USER_REWARD_KEY
from coars_verl.constants import ROLE_RECOMMENDER as REC, ROLE_USER as USER
from coars_verl.dialogue.state import Dialogue, DialogueConfig, DialogueSample
from coars_verl.rewards.interaction import RewardConfig, compute_role_rewards

SAMPLE = DialogueSample(
    user_id="u", history_titles=("Alien",), candidate_titles=("The Matrix", "Heat", "Up"),
    candidate_item_ids=("m", "h", "u"), target_title="Heat", target_item_id="h",
)


def _reward_info(script):
    dialogue = Dialogue(SAMPLE, DialogueConfig(max_turns=3))
    for role, text in script:
        dialogue.submit(role, text)
    return compute_role_rewards(dialogue.transcript.summary(), RewardConfig()).as_extra_info()


def test_each_sample_is_scored_with_its_own_roles_reward():
    # turn 1: "Up" rejected (user right), turn 2: "Heat" accepted -> hit at turn 2
    hit_late = _reward_info([(REC, "Reason: r\nItem: Up"), (USER, "Reason: u\nDecision: no"),
                             (REC, "Reason: r\nItem: Heat"), (USER, "Reason: u\nDecision: yes")])
    # the user accepts a wrong item at turn 1: no hit, user wrong on its one answer
    false_accept = _reward_info([(REC, "Reason: r\nItem: Up"), (USER, "Reason: u\nDecision: yes")])
    # by hand (gamma 0.9, beta 0.5): R_rec = 0.9 + 0.5, R_user = 1 + 0.5; then R_rec = 0, R_user = 0
    roles = [USER, REC, REC, USER]
    infos = [hit_late, hit_late, false_accept, false_accept]
    assert role_scores(roles, infos).tolist() == pytest.approx([1.5, 1.4, 0.0, 0.0])
    assert role_scores([REC, USER], [{REC_REWARD_KEY: 0.25, USER_REWARD_KEY: -0.75}] * 2).tolist() == [0.25, -0.75]


def test_a_missing_role_reward_is_an_error_that_names_the_keys():
    with pytest.raises(KeyError, match="user"):
        role_scores([USER], [{REC_REWARD_KEY: 1.0}])
    with pytest.raises(ValueError, match="2 roles for 1"):
        role_scores([REC, USER], [{REC_REWARD_KEY: 1.0, USER_REWARD_KEY: 0.0}])


def test_the_score_sits_on_each_samples_last_response_token():
    out = scores_on_last_token(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([3, 1, 0]), width=4)
    assert out.tolist() == [[0, 0, 0.5, 0], [-1.0, 0, 0, 0], [2.0, 0, 0, 0]]
    with pytest.raises(ValueError, match="width 2"):
        scores_on_last_token(torch.tensor([1.0]), torch.tensor([3]), width=2)


def test_delta_is_teacher_minus_student_token_by_token_and_zero_without_context():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    student = torch.tensor([[-1.0, -2.0, -3.0, -9.0], [-0.5, -0.5, -9.0, -9.0], [-4.0, -3.0, -2.0, -1.0]])
    teacher_rows = {0: torch.tensor([-0.5, -2.5, -1.0]), 2: torch.tensor([-4.0, -1.0, -2.5, -0.25])}
    delta, has_context = self_distill_delta(teacher_rows, student, mask)
    assert has_context.tolist() == [True, False, True]
    assert delta.tolist() == [[0.5, -0.5, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 2.0, -0.5, 0.75]]


def test_teacher_rows_longer_than_the_response_width_are_refused():
    with pytest.raises(ValueError, match="sample 0: 3 teacher log-probs"):
        self_distill_delta({0: torch.zeros(3)}, torch.zeros(1, 2), torch.ones(1, 2))


def test_the_batch_user_balance_applies_only_when_configured():
    """``coars.reward.user_balance: batch`` changes the user's scores (and only the user's); the
    default and the outcome mode leave the reward manager's values."""
    # two "no" answers to other items (both right, no hit), and a hit at turn 2 after a right "no"
    always_no = _reward_info([(REC, "Reason: r\nItem: Up"), (USER, "Reason: u\nDecision: no"),
                              (REC, "Reason: r\nItem: The Matrix"), (USER, "Reason: u\nDecision: no")])
    hit_late = _reward_info([(REC, "Reason: r\nItem: Up"), (USER, "Reason: u\nDecision: no"),
                             (REC, "Reason: r\nItem: Heat"), (USER, "Reason: u\nDecision: yes")])
    roles, infos, real = [USER, REC, USER, REC], [always_no, always_no, hit_late, hit_late], [True] * 4
    plain = role_scores(roles, infos).tolist()

    unchanged, weights = batch_reward_infos(roles, infos, real, RewardConfig())
    assert weights is None and role_scores(roles, unchanged).tolist() == plain
    outcome, weights = batch_reward_infos(roles, infos, real, RewardConfig(mode="outcome", user_balance="batch"))
    assert weights is None and role_scores(roles, outcome).tolist() == plain

    balanced, weights = batch_reward_infos(roles, infos, real, RewardConfig(user_balance="batch"))
    # judgments: 1 target, 3 others -> w_target 2, w_other 2/3: always_no's 1.0 -> 2/3, hit_late's 1 + 0.5 -> (2/3 + 2)/2 + 0.5
    assert weights == pytest.approx((2.0, 2 / 3))
    assert role_scores(roles, balanced).tolist() == pytest.approx([2 / 3, plain[1], 4 / 3 + 0.5, plain[3]])
