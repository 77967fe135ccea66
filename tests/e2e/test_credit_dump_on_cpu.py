"""The credit dump of a real 2-step CoARS run on CPU (rlsd on): each dumped token's quantities are
the tensors the update used. The advantages are checked against verl's own per-step dump, which is
read back from TransferQueue after the write-back (what the actor update reads); the final
advantages are rebuilt from the dumped outcome advantage and weight with combine."""

import json
from collections import defaultdict

import pytest
import torch

from coars_verl.algo.advantage import combine
from coars_verl.credit_dump import FORMAT, VERSION, read_credit_steps, session_of


@pytest.fixture(scope="module")
def dumped(coars_two_step_run):
    _, run_dir, _ = coars_two_step_run
    rollouts = run_dir / "rollouts"
    verl_rows = {step: {row["key"]: row for row in map(json.loads, (rollouts / f"{step}.jsonl").read_text().splitlines())} for step in (1, 2)}
    return rollouts, read_credit_steps(rollouts / "credit"), verl_rows


def test_one_file_per_step_written_atomically(dumped):
    rollouts, steps, _ = dumped
    assert [s["step"] for s in steps] == [1, 2]
    assert all(s["format"] == FORMAT and s["version"] == VERSION for s in steps)
    assert sorted(p.name for p in (rollouts / "credit").iterdir()) == ["step_1.json", "step_2.json"]  # no temporary file left


def test_the_first_dialogues_in_key_order_with_both_roles(dumped):
    """coars.dump.dialogues_per_step defaults to 4: the first 4 sessions of the step's real samples in
    key order, each with its recommender and its user sample (a wrong choice or one role lost fails)."""
    _, steps, verl_rows = dumped
    for payload in steps:
        real_keys = [k for k, row in verl_rows[payload["step"]].items() if not row["is_padding"]]
        assert [d["session"] for d in payload["dialogues"]] == sorted({session_of(k) for k in real_keys})[:4]
        for dialogue in payload["dialogues"]:
            assert sorted(s["role"] for s in dialogue["samples"]) == ["recommender", "user"]
            assert all(session_of(s["key"]) == dialogue["session"] for s in dialogue["samples"])
            assert dialogue["summary"]["turns"] >= 1 and "hit" in dialogue["summary"]


def test_each_token_carries_the_advantage_the_update_used(dumped):
    """Per sample: every per-token list as long as the response ids; the dumped final advantages
    average (over the response mask) to the advantage verl's dump read back after the write-back, to
    float32 precision; the own reward is verl's score; the mask counts verl's response tokens."""
    _, steps, verl_rows = dumped
    checked = 0
    for payload in steps:
        for dialogue in payload["dialogues"]:
            for sample in dialogue["samples"]:
                row = verl_rows[payload["step"]][sample["key"]]
                n = len(sample["response_ids"])
                for name in ("tokens", "response_mask", "outcome_advantage", "delta", "weight", "advantage"):
                    assert len(sample[name]) == n, name
                assert sum(sample["response_mask"]) == row["response_tokens"]
                assert sample["reward"] == pytest.approx(row["score"], abs=1e-6)
                assert dialogue["rewards"][sample["role"]] == sample["reward"]
                mask = torch.tensor(sample["response_mask"], dtype=torch.float32)
                adv = torch.tensor(sample["advantage"])
                assert float((adv * mask).sum() / mask.sum().clamp(min=1)) == pytest.approx(row["advantage_mean"], rel=1e-5, abs=1e-6)
                checked += 1
    assert checked == 2 * 4 * 2


def test_final_advantage_is_rlsd_of_the_dumped_outcome_and_delta(dumped):
    """A_t = combine(rlsd, A, delta) at the step's lambda, and = A ((1 - lambda) + lambda w_t) with the
    dumped weight; delta is 0 without a teacher context and off the mask; the teacher spoke somewhere."""
    _, steps, _ = dumped
    sources, moved = defaultdict(int), 0
    for payload in steps:
        sd = payload["self_distill"]
        assert sd["mode"] == "rlsd" and 0 < sd["lambda"] <= 0.5
        for dialogue in payload["dialogues"]:
            for sample in dialogue["samples"]:
                mask = torch.tensor([sample["response_mask"]], dtype=torch.float32)
                outcome, delta = torch.tensor([sample["outcome_advantage"]]), torch.tensor([sample["delta"]])
                adv, weight = torch.tensor([sample["advantage"]]), torch.tensor([sample["weight"]])
                expected = combine("rlsd", outcome, delta, mask, lam=sd["lambda"], eps_w=sd["eps_w"])
                torch.testing.assert_close(adv, expected, rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(adv, outcome * ((1 - sd["lambda"]) + sd["lambda"] * weight) * mask, rtol=1e-5, atol=1e-6)
                assert torch.all(delta[mask == 0] == 0)
                if sample["teacher"] is None:
                    assert torch.all(delta == 0)
                else:
                    sources[sample["teacher"]["source"]] += 1
                    assert sample["teacher"]["text"]
                    moved += int(torch.any(delta != 0))
    assert set(sources) <= {"memory", "sibling", "hindsight"} and moved > 0
