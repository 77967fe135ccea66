"""The teacher pass is shaped for the worker that scores it: a reference teacher without LoRA is scored
by verl's reference worker group, whose data-parallel layout (mesh ``ref``) need not be the actor's.

A trainer that sizes the reference worker's batch by the actor's data-parallel ranks (the old
``_actor_dp_size``) sends 8 rows for 5 records to a 2-rank reference worker instead of 6, and fails here."""

import pytest
import torch
from omegaconf import OmegaConf

from coars_verl.distill.config import SelfDistillConfig
from coars_verl.trainer import CoarsPPOTrainer


class Sent(Exception):
    """Raised by a fake worker group with the batch it was called with (the test needs no log-probs back)."""

    def __init__(self, method, batch):
        super().__init__(method)
        self.method, self.batch = method, batch


class FakeWorkerGroup:
    def __init__(self, meshes: dict[str, int], world_size: int = 4):
        # rank -> dp rank, as verl's _query_dispatch_info answers (dp size = max + 1)
        self._meshes = {mesh: [rank % dp for rank in range(world_size)] for mesh, dp in meshes.items()}
        self._dispatch_info = {}

    def _query_dispatch_info(self, mesh):
        return self._meshes[mesh]

    def compute_log_prob(self, batch):
        raise Sent("compute_log_prob", batch)

    def compute_ref_log_prob(self, batch):
        raise Sent("compute_ref_log_prob", batch)


def _trainer(teacher: str, ref_in_actor: bool) -> CoarsPPOTrainer:
    trainer = CoarsPPOTrainer.__new__(CoarsPPOTrainer)  # the teacher pass alone: no verl workers, no Ray
    trainer.config = OmegaConf.create({"actor_rollout_ref": {
        "actor": {"use_dynamic_bsz": False},
        "rollout": {"temperature": 1.0, "log_prob_micro_batch_size_per_gpu": 8},
        "ref": {"log_prob_use_dynamic_bsz": False, "log_prob_micro_batch_size_per_gpu": 8}}})
    trainer.sd_config = SelfDistillConfig.from_mapping({"teacher": teacher})
    trainer.ref_in_actor = ref_in_actor
    trainer.tokenizer = type("Tokenizer", (), {"eos_token_id": 0})()
    trainer.actor_rollout_wg = FakeWorkerGroup({"actor": 4})            # 4 data-parallel ranks
    trainer.ref_policy_wg = trainer.actor_rollout_wg if ref_in_actor else FakeWorkerGroup({"ref": 2})  # 2 ranks
    return trainer


def _sent(trainer, records: int) -> Sent:
    fetched = {i: {"responses": torch.tensor([5, 6, 0]), "response_mask": torch.tensor([1, 1, 1])} for i in range(records)}
    with pytest.raises(Sent) as sent:
        trainer._teacher_log_probs(None, list(range(records)), [[1, 2, 3 + i] for i in range(records)], {}, fetched)
    return sent.value


def test_a_standalone_reference_worker_gets_a_batch_for_its_own_data_parallel_ranks():
    sent = _sent(_trainer("reference", ref_in_actor=False), records=5)
    # 5 records over the reference worker's 2 ranks: 3 per rank, 6 rows (the actor's 4 ranks would make 8)
    assert sent.method == "compute_ref_log_prob" and sent.batch.batch_size[0] == 6


@pytest.mark.parametrize("teacher, ref_in_actor", [("policy", False), ("reference", True)])
def test_the_actor_scores_the_policy_teacher_and_the_lora_reference_with_its_layout(teacher, ref_in_actor):
    sent = _sent(_trainer(teacher, ref_in_actor), records=5)
    # 5 records over the actor's 4 ranks: 2 per rank, 8 rows
    assert sent.method == "compute_log_prob" and sent.batch.batch_size[0] == 8
