"""The coars_sync trainer's write-back: row i of what goes back to TransferQueue is sample i's own
advantages and rewards, cut to its own response length (a permuted or shifted write-back fails)."""

import torch

from coars_verl.trainer import nested_fields


def test_each_sample_gets_back_its_own_row_at_its_own_length():
    lengths = [3, 1, 4, 2]
    mask_nested = torch.nested.as_nested_tensor([torch.ones(n, dtype=torch.int64) for n in lengths], layout=torch.jagged)
    advantages = torch.arange(16, dtype=torch.float32).reshape(4, 4) + 1.0
    rewards = -advantages
    out = nested_fields({"advantages": advantages, "token_level_rewards": rewards}, mask_nested)
    assert out.batch_size == torch.Size([4])
    for name, padded in (("advantages", advantages), ("token_level_rewards", rewards)):
        rows = out[name].unbind()
        assert [r.tolist() for r in rows] == [padded[i, :n].tolist() for i, n in enumerate(lengths)]
