"""The coars_sync trainer's write-back: row i of what goes back to TransferQueue is sample i's own
advantages and rewards, cut to its own response length (a permuted or shifted write-back fails)."""

import torch

from coars_verl.trainer import arrival_free_order, nested_fields


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


def test_a_batch_is_ordered_by_what_its_samples_are_not_by_when_they_arrived():
    """Two runs of one job get the same samples in different arrival orders and with different (random)
    uids; both must hand verl's balancing the same order: step, row index (numerically), session, output."""
    samples = [  # (key, tags, row index) as one run saw them arrive
        ("u9_1_1", {"global_steps": 1, "prompt_len": 5, "response_len": 3}, 10),
        ("u2_0_0", {"global_steps": 1, "prompt_len": 5, "response_len": 4}, 9),
        ("u9_0_1", {"global_steps": 1, "prompt_len": 5, "response_len": 2}, 10),
        ("u2_0_1", {"global_steps": 1, "prompt_len": 5, "response_len": 1}, 9),
        ("u9_0_0", {"global_steps": 1, "prompt_len": 5, "response_len": 6}, 10),
    ]
    identity = lambda order, batch: [(batch[i][2], batch[i][0].split("_", 1)[1]) for i in order]  # noqa: E731
    order = arrival_free_order([k for k, _, _ in samples], [t for _, t, _ in samples], [r for _, _, r in samples])
    assert identity(order, samples) == [(9, "0_0"), (9, "0_1"), (10, "0_0"), (10, "0_1"), (10, "1_1")]
    other_run = [(f"x{k[2:]}" if k.startswith("u9") else f"a{k[2:]}", t, r) for k, t, r in reversed(samples)]
    other = arrival_free_order([k for k, _, _ in other_run], [t for _, t, _ in other_run], [r for _, _, r in other_run])
    assert identity(other, other_run) == identity(order, samples)
