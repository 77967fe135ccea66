"""The evaluation dialogue and user-simulation runners with a scripted backend (no model), the
backends' interface (a fake vLLM module), and resumable runs."""

from __future__ import annotations

import json
import types

import pytest

from coars_verl.dialogue.prompts import PromptTemplates
from coars_verl.dialogue.state import Dialogue, DialogueConfig
from coars_verl.eval import data as data_mod
from coars_verl.eval.backends import VLLMBackend, resolve_backend_name
from coars_verl.eval.evaluate import EvalOptions, evaluate
from coars_verl.eval.runner import GenerationLimits, run_dialogues, run_user_sim
from coars_verl.eval.store import OptionsMismatch

from eval_fakes import (
    TEMPLATES,
    ByteCodec,
    ScriptedBackend,
    first_candidate_policy,
    last_suggestion,
    make_extra_info,
    role_of,
)

CANDIDATES = ["Alien", "Heat", "Up", "Jaws"]


def rows_of(*infos):
    return [data_mod.DialogueRow(f"test/{info['index']}", info["user_id"], info) for info in infos]


def scripted_policy(messages):
    """Recommender: turn 1 invalid, turn 2 'Alien', turn 3 candidate 3 ('Up'). User: garbage to
    Alien, yes to Up."""
    if role_of(messages) == "recommender":
        turn = sum(m["role"] == "assistant" for m in messages) + 1
        return {1: "Reason: hm.\nItem: Titanic", 2: "Reason: sci-fi.\nItem: Alien", 3: "Reason: fun.\nItem: 3"}[turn]
    return "Reason: yes!\nDecision: yes" if last_suggestion(messages) == "Up" else "I am not sure"


def test_dialogue_is_the_training_dialogue():
    info = make_extra_info(0, "u1", CANDIDATES, "Up")
    backend = ScriptedBackend(scripted_policy)
    [summary] = run_dialogues(rows_of(info), backend, ByteCodec(), DialogueConfig(max_turns=5), GenerationLimits(max_tokens=500))

    # the same answers fed straight into the dialogue state machine give the same summary
    reference = Dialogue.from_extra_info(info, DialogueConfig(max_turns=5))
    seen = {"recommender": [], "user": []}
    while not reference.done:
        role = reference.next_role()
        seen[role].extend(reference.pending_messages(role))
        text = scripted_policy(seen[role])
        seen[role].append({"role": "assistant", "content": text})
        reference.submit(role, text)
    assert summary == reference.transcript.summary()
    assert (summary["hit"], summary["k_hit"], summary["turns"], summary["end_reason"]) == (True, 3, 3, "accepted")
    assert summary["rec_valid"] == [False, True, True] and summary["user_format_errors"] == 1

    # the prompts the backend saw: each role's own chat, its answers as assistant messages
    rec_prompts = [p for p in backend.prompts if role_of(p) == "recommender"]
    assert [len(p) for p in rec_prompts] == [2, 4, 6]
    assert rec_prompts[-1] == seen["recommender"][:6]
    user_prompts = [p for p in backend.prompts if role_of(p) == "user"]
    assert user_prompts[0][0] == {"role": "system", "content": TEMPLATES.user_system}
    assert "Up" not in user_prompts[0][1]["content"].split("Candidates:")[0]  # history only; no target leak by construction


def test_lock_step_batches_and_budgets():
    infos = [make_extra_info(i, f"u{i}", CANDIDATES, CANDIDATES[i]) for i in range(4)]
    backend = ScriptedBackend(first_candidate_policy(yes_to="Heat"))
    summaries = run_dialogues(rows_of(*infos), backend, ByteCodec(), DialogueConfig(max_turns=3), GenerationLimits(max_tokens=500))
    # turn 1: 4 recommendations, 4 user answers (all "no" to Alien); turn 2: 4 + 4 (yes to Heat): done
    assert [n for n, _ in backend.calls] == [4, 4, 4, 4]
    assert [s["turns"] for s in summaries] == [2, 2, 2, 2]
    assert [s["hit"] for s in summaries] == [False, True, False, False]
    assert [s["k_hit"] for s in summaries] == [1, 2, 0, 0]

    # a context too small for any answer: every dialogue ends on its budget before its first turn
    tiny = ScriptedBackend(first_candidate_policy(), max_context=50)
    cut = run_dialogues(rows_of(*infos[:2]), tiny, ByteCodec(), DialogueConfig(), GenerationLimits(max_tokens=500, max_context=50))
    assert [(s["turns"], s["end_reason"]) for s in cut] == [(0, "budget"), (0, "budget")]
    assert tiny.calls == []

    # max tokens per answer reaches the backend; a response budget cuts the dialogue as in training
    short = ScriptedBackend(first_candidate_policy())
    run_dialogues(rows_of(infos[0]), short, ByteCodec(), DialogueConfig(max_turns=2), GenerationLimits(max_tokens=77))
    assert {limit for _, limit in short.calls} == {77}
    budget = ScriptedBackend(first_candidate_policy())
    [s] = run_dialogues(rows_of(infos[0]), budget, ByteCodec(), DialogueConfig(max_turns=5), GenerationLimits(max_tokens=500, response_budget=300))
    assert s["end_reason"] == "budget" and 1 <= s["turns"] < 5


def test_first_prompt_matches_the_data_files_prompt(small_data):
    rows = data_mod.load_dialogue_rows(small_data, "test")
    import pandas as pd

    stored = pd.read_parquet(small_data / "test.parquet")["prompt"]
    backend = ScriptedBackend(first_candidate_policy())
    run_dialogues(rows[:3], backend, ByteCodec(), DialogueConfig(max_turns=1), GenerationLimits(max_tokens=500))
    for messages, prompt in zip(backend.prompts[:3], stored[:3]):
        assert messages == [dict(m) for m in prompt]


def test_user_sim_questions_one_item_each():
    row = data_mod.UserSimRow("test/0", "u1", ("Old One", "Old Two"), ("Alien", "Heat", "Up"), ("1", "2", "3"), (True, False, True))

    def policy(messages):
        item = last_suggestion(messages)
        return {"Alien": "Reason: a.\nDecision: yes", "Heat": "Reason: b.\nDecision: no", "Up": "no idea"}[item]

    backend = ScriptedBackend(policy)
    [record] = run_user_sim([row], backend, ByteCodec(), DialogueConfig(), GenerationLimits(max_tokens=500))
    assert record["decisions"] == [1, 0, None]
    assert record["errors"][:2] == ["", ""] and record["errors"][2]
    assert record["labels"] == [1, 0, 1] and record["key"] == "test/0"
    assert backend.calls == [(3, 500)]  # one batch, one question per item
    first = backend.prompts[0]
    assert first[0] == {"role": "system", "content": PromptTemplates().user_system}
    assert len(first) == 2
    task = first[1]["content"]
    assert "Your history, oldest first:\n- Old One\n- Old Two" in task
    assert "Candidates:\n1. Alien\n2. Heat\n3. Up" in task
    assert "The recommender suggests: Alien\nIts reason: (no reason given)" in task


# --------------------------------------------------------------------------------------------------
# Backends


class FakeOutput:
    def __init__(self, ids):
        self.outputs = [types.SimpleNamespace(token_ids=tuple(ids), text="ignored")]


def fake_vllm_module(log):
    class SamplingParams:
        def __init__(self, **kwargs):
            log.setdefault("sampling", []).append(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            log["llm"] = kwargs
            self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=1234))

        def generate(self, prompts, sampling_params, use_tqdm=True):
            log.setdefault("prompts", []).append(prompts)
            return [FakeOutput(list(reversed(p["prompt_token_ids"]))[:3]) for p in prompts]

    return types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)


def test_vllm_backend_against_the_offline_api():
    log: dict = {}
    backend = VLLMBackend("/models/m", dtype="bfloat16", engine_kwargs={"gpu_memory_utilization": 0.5}, vllm_module=fake_vllm_module(log))
    assert log["llm"]["model"] == "/models/m" and log["llm"]["tokenizer"] == "/models/m"
    assert log["llm"]["dtype"] == "bfloat16" and log["llm"]["gpu_memory_utilization"] == 0.5
    assert log["llm"]["enable_prefix_caching"] is True
    assert backend.max_context == 1234
    out = backend.generate([[1, 2, 3, 4], [5, 6]], max_tokens=7)
    assert out == [[4, 3, 2], [6, 5]]
    assert log["prompts"][0] == [{"prompt_token_ids": [1, 2, 3, 4]}, {"prompt_token_ids": [5, 6]}]
    assert log["sampling"][0] == {"temperature": 0.0, "max_tokens": 7}
    assert backend.generate([], 7) == []


def test_vllm_gets_every_prompt_with_its_own_limit_in_one_call():
    from coars_verl.eval.runner import _Request, generate_grouped

    log: dict = {}
    backend = VLLMBackend("/models/m", vllm_module=fake_vllm_module(log))
    requests = [_Request(0, "user", [1, 2], 5), _Request(1, "recommender", [3, 4, 5], 9), _Request(2, "user", [6], 5)]
    assert generate_grouped(backend, requests) == [[2, 1], [5, 4, 3], [6]]
    assert len(log["prompts"]) == 1  # one engine call, not one per distinct limit
    assert [p["max_tokens"] for p in log["sampling"]] == [5, 9, 5]


def test_vllm_kwargs_that_the_tool_sets_are_refused_by_name():
    with pytest.raises(ValueError, match=r"\['dtype', 'seed'\] are set by the tool"):
        VLLMBackend("/models/m", engine_kwargs={"dtype": "float16", "seed": 3, "max_model_len": 4096}, vllm_module=fake_vllm_module({}))


def test_a_missing_vllm_fails_before_anything_is_written(tmp_path, capsys, monkeypatch):
    import importlib.util

    from coars_verl.eval import backends
    from coars_verl.eval.cli import main

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    out = tmp_path / "out"
    code = main(["--model", str(tmp_path / "no-model"), "--data", str(tmp_path), "--out", str(out), "--backend", "vllm"])
    assert code == 2 and "vLLM is not installed" in capsys.readouterr().err
    assert not out.exists()  # no run.json, no merge
    assert backends.vllm_available() is False
    # installed but broken: auto must not pick it, and the explicit choice names the error
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: object())
    assert "does not import" in backends.vllm_import_problem()


def test_backend_names():
    assert resolve_backend_name("hf") == "hf"
    assert resolve_backend_name("auto") in ("hf", "vllm")
    with pytest.raises(ValueError):
        resolve_backend_name("tgi")


# --------------------------------------------------------------------------------------------------
# Resumable runs


def options(data, **overrides):
    values = dict(model="scripted-model", data=str(data), max_turns=3, max_tokens=500, batch_size=3, label="scripted")
    values.update(overrides)
    return EvalOptions(**values)


def run(data, out, **kwargs):
    backend = ScriptedBackend(first_candidate_policy(yes_to="Film C"))
    extra = {k: kwargs.pop(k) for k in ("stop_after_batches", "on_batch") if k in kwargs}
    return evaluate(options(data, **kwargs), out, backend=backend, codec=ByteCodec(), progress=False, **extra), backend


def test_resume_after_stop_gives_the_same_totals(small_data, tmp_path):
    full, _ = run(small_data, tmp_path / "full")
    assert full["complete"] and full["counts"]["dialogues_done"] == 10 and full["counts"]["users_done"] == 5

    partial, _ = run(small_data, tmp_path / "resumed", stop_after_batches=2)
    assert not partial["complete"]
    assert partial["counts"]["dialogues_done"] == 6  # two batches of 3
    resumed, backend = run(small_data, tmp_path / "resumed")
    assert resumed["complete"]
    assert resumed["metrics"] == full["metrics"]
    assert resumed["counts"] == full["counts"]
    # only the 4 remaining dialogues were played again (plus the users)
    assert sum(n for n, _ in backend.calls[:1]) == 3

    lines = (tmp_path / "resumed" / "dialogue.jsonl").read_text().splitlines()
    assert sorted(json.loads(l)["key"] for l in lines) == sorted(f"test/{i}" for i in range(10))
    assert (tmp_path / "resumed" / "results.md").read_text().startswith("# Evaluation: scripted")


def test_resume_after_a_crash_and_a_cut_line(small_data, tmp_path):
    out = tmp_path / "crash"
    full, _ = run(small_data, tmp_path / "full")

    def crash(task, batches):
        if batches == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(small_data, out, on_batch=crash)
    with open(out / "dialogue.jsonl", "a") as fh:  # a kill in the middle of a write
        fh.write('{"key": "test/9", "summ')
    resumed, _ = run(small_data, out)
    assert resumed["metrics"] == full["metrics"]
    assert len((out / "dialogue.jsonl").read_text().splitlines()) == 10


def test_other_options_are_refused(small_data, tmp_path):
    run(small_data, tmp_path / "a", stop_after_batches=1)
    with pytest.raises(OptionsMismatch, match="max_turns"):
        run(small_data, tmp_path / "a", max_turns=4)
    with pytest.raises(OptionsMismatch, match="one_per_user"):
        run(small_data, tmp_path / "a", one_per_user=True)
    # a different batch size is allowed (it does not change the results)
    resumed, _ = run(small_data, tmp_path / "a", batch_size=5)
    assert resumed["complete"]


def test_selection_one_per_user_and_max(small_data):
    rows = data_mod.load_dialogue_rows(small_data, "test", one_per_user=True)
    assert [r.key for r in rows] == ["test/1", "test/3", "test/5", "test/7", "test/9"]  # each user's last window
    assert [r.key for r in data_mod.load_dialogue_rows(small_data, "test", max_samples=3)] == ["test/0", "test/1", "test/2"]
    assert len(data_mod.load_user_sim_rows(small_data, "test", max_users=2)) == 2
    with pytest.raises(FileNotFoundError):
        data_mod.load_dialogue_rows(small_data, "valid")


def test_baselines_on_small_data(small_data, tmp_path):
    from coars_verl.eval.baselines import run_baselines

    expected, seeded, popularity = run_baselines(small_data, tmp_path / "b", seed=3)
    again = run_baselines(small_data, seed=3)
    fewer = run_baselines(small_data, seed=3, max_samples=4)
    assert again[1]["metrics"] == seeded["metrics"]  # seeded: reproducible
    assert fewer[1]["metrics"]["user_sim"] == seeded["metrics"]["user_sim"]  # independent of the dialogue samples
    assert expected["metrics"]["recommendation"]["hit_at_1"] == pytest.approx(1 / 4)  # 4 candidates each
    # popularity: train counts [3, 3, 1, 0, 5, 2, 2, 1] for ids 100..107; candidates are 4 consecutive films
    rows = data_mod.load_dialogue_rows(small_data, "test")
    counts = [3, 3, 1, 0, 5, 2, 2, 1]
    hits = 0
    for row in rows:
        ids = [int(i) - 100 for i in row.candidate_item_ids]
        best = max(ids, key=lambda i: (counts[i], -i))
        hits += str(100 + best) == row.extra_info["target_item_id"]
    assert popularity["metrics"]["recommendation"]["hit_at_1"] == pytest.approx(hits / len(rows))
    assert popularity["metrics"]["recommendation"]["valid_ratio"] == 1.0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "popularity.json", "popularity.md", "random_expected.json", "random_expected.md", "random_seed3.json", "random_seed3.md"]
