"""The format-primed models: they must write answers the dialogue accepts, where the base does not."""

from __future__ import annotations

import random

import pytest
import torch

from coars_verl.models.primed import BASE_DEFAULTS, build_primed_model_result, primed_options, synthetic_examples


def _valid_answer_share(model_dir, dialogues: int = 6, seed: int = 7) -> float:
    """Share of sampled answers (temperature 1) that the dialogue accepted, over fresh synthetic dialogues."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coars_verl.dialogue.state import Dialogue, DialogueSample

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    accepted = answered = 0
    for _ in range(dialogues):
        names = [f"Film {rng.randrange(10_000)}" for _ in range(20)]
        sample = DialogueSample(
            user_id="0", history_titles=tuple(names[:5]), candidate_titles=tuple(names[5:]),
            candidate_item_ids=tuple(str(i) for i in range(15)), target_title=names[9], target_item_id="4",
        )
        dialogue, contexts = Dialogue(sample), {}
        while not dialogue.done:
            role = dialogue.next_role()
            context = contexts.setdefault(role, [])
            context.extend(dialogue.pending_messages(role))
            ids = tokenizer.apply_chat_template(context, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            with torch.no_grad():
                out = model.generate(**ids, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=40,
                                     pad_token_id=tokenizer.eos_token_id)
            answer = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            context.append({"role": "assistant", "content": answer})
            event = dialogue.submit(role, answer)
            answered += 1
            accepted += event.valid
    return accepted / answered


def test_options_are_per_base_and_checked():
    assert primed_options()["steps"] == BASE_DEFAULTS["tiny"]["steps"]
    assert primed_options("smollm2")["lr"] == BASE_DEFAULTS["smollm2"]["lr"]
    assert primed_options("smollm2", steps=3)["steps"] == 3
    with pytest.raises(ValueError, match="base must be one of"):
        primed_options("gpt2")
    with pytest.raises(TypeError, match="unknown option"):
        primed_options("tiny", learning_rate=1.0)


def test_synthetic_examples_cover_both_roles_with_parsable_answers():
    from coars_verl.dialogue.parsers import parse_decision

    examples = synthetic_examples(4, 20, 0.25, 0)
    roles = {messages[0]["content"] for messages, _ in examples}
    assert len(roles) == 2  # two system prompts: recommender and user agent
    decisions = [answer for _, answer in examples if "Decision:" in answer]
    assert decisions and all(parse_decision(answer).decision is not None for answer in decisions)
    assert all(answer.startswith("Reason: ") for _, answer in examples)


def test_primed_tiny_model_answers_in_format_where_the_random_one_does_not(primed_model_path, tiny_model_path):
    primed, base = _valid_answer_share(primed_model_path), _valid_answer_share(tiny_model_path)
    assert base < 0.2, base
    assert primed > 0.3, primed  # measured 0.47 (the base: 0)


def test_rebuild_is_skipped_for_the_same_options(tmp_path):
    first = build_primed_model_result(tmp_path / "m", steps=2, batch_size=2)
    again = build_primed_model_result(tmp_path / "m", steps=2, batch_size=2)
    other = build_primed_model_result(tmp_path / "m", steps=3, batch_size=2)
    assert first.built and not again.built and other.built
    assert "format-primed" in first.kind


def test_smollm2_base_is_primed_and_saved_as_a_loadable_checkpoint(tmp_path, smollm2_path):
    import json

    result = build_primed_model_result(tmp_path / "smol", base="smollm2", steps=1, batch_size=1)
    assert result.vocab_size == 49152 and 134e6 < result.num_params < 135e6
    priming = json.loads((result.path / "priming.json").read_text())
    assert priming["base"] == "smollm2" and 0 < priming["final_loss"] < 20
