"""The verl methods that coars_sync replaces or wraps are pinned to verl 0.9.1's source.

``CoarsPPOTrainer`` re-implements ``_compute_advantage`` and ``_log_rollout_data`` with our steps
woven in, and wraps the checkpoint and reference-log-prob methods. When a verl upgrade changes
any of them, this test fails and names the method: re-read verl's new version against
``coars_verl/trainer.py`` before updating the fingerprint."""

import hashlib
import inspect

import pytest
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

PINNED = {
    "_compute_advantage": ("2a4a2aa4a475b228", "our copy: fetch, reward, KL, rollout correction, estimator, write-back"),
    "_log_rollout_data": ("c1fa53a46df397cb", "our override dumps the same JSONL plus roles and advantages"),
    "_save_checkpoint": ("8c2435b577e54f19", "we write coars_memory.json before it (it writes the resume marker last)"),
    "_load_checkpoint": ("bb446d77c48ac6cc", "we restore coars_memory.json after it, from the same step folder"),
    "_compute_ref_log_prob": ("f4d69ef51b12c284", "we skip it when no reference policy is needed"),
    "_balance_batch": ("f9b6e887d7504a65", "we sort the batch by what each sample is before it (arrival_free_order)"),
    "_init_dataloader": ("86cf3749e087b883", "we resolve the lambda schedule after it, from the total_training_steps it sets"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_verl_method_we_replace_or_wrap_is_unchanged(name):
    fingerprint, what_to_check = PINNED[name]
    source = inspect.getsource(getattr(PPOTrainerSync, name))
    found = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert found == fingerprint, f"verl changed PPOTrainer.{name} ({found}); re-check coars_verl/trainer.py: {what_to_check}"


def test_the_private_dispatch_table_we_read_is_unchanged():
    """``CoarsPPOTrainer._scoring_dp_size`` reads a worker group's private ``_dispatch_info`` the way
    this verl function fills it (rank -> dp rank, dp size = max + 1)."""
    from verl.single_controller.base import decorator

    source = inspect.getsource(decorator.dispatch_lazy_compute_data_proto)
    found = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert found == "84937944eaae1214", f"verl changed dispatch_lazy_compute_data_proto ({found}); re-check CoarsPPOTrainer._scoring_dp_size"
