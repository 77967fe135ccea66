"""The coars_sync trainer's own glue at its step, without Ray: what goes into the dialogue memory, and
which samples the teacher pass is asked to score.

Each test names the wrong trainer it catches: one user's item history stored under every user of
the batch, each dialogue stored twice (once per role sample, so a user's memory fills with copies),
and the teacher asked to score tied groups again (results identical, cost not)."""

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.config import SelfDistillConfig
from coars_verl.distill.memory import DialogueMemory
from coars_verl.trainer import CoarsPPOTrainer
from distill.distill_fakes import played



def trainer(sd_config=None, step=1):
    """A ``CoarsPPOTrainer`` with only what these methods read (no Ray, no workers, no TransferQueue)."""
    t = object.__new__(CoarsPPOTrainer)
    t.memory = DialogueMemory()
    t.global_steps = step
    t.sd_config = sd_config or SelfDistillConfig(lambda_decay_steps=100, lambda_decay_fraction=None)
    t.config = OmegaConf.create({"algorithm": {"adv_estimator": "coars_grpo", "norm_adv_by_std_in_grpo": True}})
    t._sd_off_logged = False
    return t


def ask_teacher(t) -> dict:
    """Replace the teacher pass by one that records which samples it was asked for (delta 0)."""
    asked = {}

    def teacher_pass(batch, data, extras, roles, own_scores, real, metrics, wanted, transcripts, item_histories=None):
        asked["wanted"] = wanted
        mask = data.batch["response_mask"]
        return torch.zeros_like(mask), torch.zeros(mask.shape[0], dtype=torch.bool)

    t._self_distill_delta = teacher_pass
    return asked


def dialogue(user):
    return Transcript.from_summary(played(user, [("Titanic", "drama", "no", f"{user} avoids romance"), ("Alien", "sci-fi", "yes", "yes")]))


def test_each_dialogue_is_remembered_once_under_its_own_user_with_its_own_item_history():
    t = trainer(step=4)
    users = ["u1", "u2", "u3"]
    transcripts = [dialogue(u) for u in users for _ in ("user", "recommender")]  # both role samples of each dialogue
    roles = ["user", "recommender"] * len(users)
    item_histories = [[f"{u}-item"] for u in users for _ in range(2)]
    t._remember(transcripts, roles, item_histories)
    for user in users:
        records = t.memory.select(user, k=10)
        assert len(records) == 1, (user, records)  # not once per role sample
        assert records[0]["step"] == 4 and f"{user} avoids romance" in records[0]["rejected"][0]["reason"]
        assert t.memory.item_history(user) == (f"{user}-item",)  # its own history, not the batch's first
    t._remember([None, None], roles[:2])  # verl's padding rows: nothing stored
    assert t.memory.num_records() == 3


def test_the_teacher_is_asked_only_for_samples_whose_group_is_not_tied():
    """rlsd: a tied (prompt, role) group has outcome advantage 0 whatever the teacher says; its samples
    are not sent to the teacher pass, and the step's metrics say so."""
    t = trainer()
    uids = ["a", "a", "b", "b", "c", "c"]
    roles = ["recommender"] * 6
    scores = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 1.0])  # group b is tied
    mask = torch.ones(6, 3)
    rewards = torch.zeros(6, 3)
    rewards[:, -1] = scores
    data = SimpleNamespace(batch={"token_level_rewards": rewards, "response_mask": mask},
                           non_tensor_batch={"uid": uids})
    real = [True] * 5 + [False]  # the last row is verl's padding
    asked = ask_teacher(t)
    metrics = {}
    t._advantages(None, data, [{}] * 6, roles, scores, real, None, None, metrics)
    assert asked["wanted"] == [True, True, False, False, True, False]
    assert metrics["coars/sd/scored_share"] == pytest.approx(3 / 5)
    assert metrics["coars/sd/skipped/outcome_advantage_zero"] == pytest.approx(2 / 5)
    assert metrics["coars/sd/lambda"] == 0.5
    assert torch.equal(data.batch["advantages"][2:4], torch.zeros(2, 3))


def test_once_lambda_is_zero_no_sample_is_sent_to_the_teacher():
    t = trainer(SelfDistillConfig(lambda_decay_steps=1, lambda_decay_fraction=None), step=2)
    data = SimpleNamespace(batch={"token_level_rewards": torch.tensor([[1.0], [0.0]]), "response_mask": torch.ones(2, 1)},
                           non_tensor_batch={"uid": ["a", "a"]})
    asked = ask_teacher(t)
    metrics = {}
    t._advantages(None, data, [{}] * 2, ["recommender"] * 2, torch.tensor([1.0, 0.0]), [True, True], None, None, metrics)
    assert asked["wanted"] == [False, False] and metrics["coars/sd/skipped/teacher_weight_zero"] == 1.0
