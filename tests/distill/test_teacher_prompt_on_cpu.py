"""Teacher prompts: the student's messages plus context, and token alignment of the teacher pass."""

import math

import pytest
import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from coars_verl.algo.advantage import token_delta
from coars_verl.distill.teacher_prompt import teacher_prompt_ids, with_teacher_context
from coars_verl.teacher_records import padding_record, scored_log_probs, scoring_order, teacher_batch, teacher_batch_shape, teacher_record

MESSAGES = [{"role": "system", "content": "You are a recommender agent."}, {"role": "user", "content": "Candidates:\n1. Heat\n2. Fargo"}]


def test_context_goes_into_the_system_message_or_before_the_user_text():
    system = with_teacher_context(MESSAGES, "NOTES", "system")
    assert system[0]["content"] == "You are a recommender agent.\n\nNOTES" and system[1] == MESSAGES[1]
    user = with_teacher_context(MESSAGES, "NOTES", "user")
    assert user[1]["content"].startswith("NOTES\n\n") and user[0] == MESSAGES[0]
    assert MESSAGES[0]["content"] == "You are a recommender agent."  # the student's messages are not modified
    assert with_teacher_context(MESSAGES[1:], "NOTES", "system")[0] == {"role": "system", "content": "NOTES"}
    with pytest.raises(ValueError, match="position"):
        with_teacher_context(MESSAGES, "NOTES", "middle")


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["system", "user"]))
def test_an_empty_context_changes_nothing(position):
    assert with_teacher_context(MESSAGES, "", position) == MESSAGES


def _response_log_probs(model, prompt_ids, response_ids):
    """What verl's actor computes: one forward over prompt + response, read at the response positions."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + response_ids])).logits[0].float()
    start = len(prompt_ids) - 1  # token t of the response is predicted at position len(prompt) - 1 + t
    lp = F.log_softmax(logits[start : start + len(response_ids)], dim=-1)
    return lp.gather(-1, torch.tensor(response_ids).unsqueeze(-1)).squeeze(-1)


def _render(tokenizer):
    return lambda messages: tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def test_with_an_empty_context_the_teacher_scores_every_token_exactly_like_the_student(tiny_model_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, torch_dtype=torch.float32).eval()
    render = _render(tok)
    student_prompt = render(MESSAGES)
    response = tok.encode("Reason: dark comedy.\nItem: Fargo<|im_end|>", add_special_tokens=False)
    teacher_prompt = teacher_prompt_ids(render, MESSAGES, "", "system")
    assert teacher_prompt == student_prompt
    student = _response_log_probs(model, student_prompt, response)
    teacher = _response_log_probs(model, teacher_prompt, response)
    assert torch.equal(teacher, student)
    mask = torch.ones(1, len(response))
    assert torch.equal(token_delta(teacher[None], student[None], mask, torch.tensor([True])), torch.zeros(1, len(response)))


def test_a_teacher_record_is_the_teacher_prompt_then_the_students_own_response(tiny_model_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    render = _render(tok)
    student_prompt = render(MESSAGES)
    teacher_prompt = teacher_prompt_ids(render, MESSAGES, "The user accepted Fargo last time.", "system")
    assert len(teacher_prompt) > len(student_prompt)
    response = tok.encode("Item: Fargo<|im_end|>", add_special_tokens=False)
    ids = torch.tensor(student_prompt + response)
    stored = {"prompts": torch.tensor(student_prompt), "responses": torch.tensor(response), "input_ids": ids,
              "attention_mask": torch.ones_like(ids), "position_ids": torch.arange(len(ids)),
              "response_mask": torch.ones(len(response), dtype=torch.int64), "uid": "p"}
    record = teacher_record(stored, teacher_prompt)
    assert record["input_ids"].tolist() == teacher_prompt + response
    assert record["prompts"].tolist() == teacher_prompt
    assert record["position_ids"].tolist() == list(range(len(teacher_prompt) + len(response)))
    assert record["attention_mask"].tolist() == [1] * (len(teacher_prompt) + len(response))
    assert torch.equal(record["responses"], stored["responses"]) and record["responses"] is not stored["responses"]
    assert torch.equal(record["response_mask"], stored["response_mask"]) and record["uid"] == "p"
    assert stored["input_ids"].tolist() == student_prompt + response  # the student's sample is untouched
    # with an empty context the teacher record is the student's sample
    same = teacher_record(stored, teacher_prompt_ids(render, MESSAGES, "", "system"))
    assert all(torch.equal(same[k], stored[k]) for k in ("prompts", "input_ids", "position_ids", "attention_mask"))


def test_a_context_that_makes_the_answer_certain_gives_its_tokens_positive_delta(smollm2_path):
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, torch_dtype=torch.float32).eval()
    render = _render(tok)
    messages = [
        {"role": "system", "content": "You are a recommender agent. Answer with 'Reason: ...' then 'Item: <title>'."},
        {"role": "user", "content": "Candidates: Heat, Fargo, Casino, Babe, Clueless. Recommend one."},
    ]
    answer = "Reason: a dark crime comedy.\nItem: Fargo"
    response = tok.encode(answer, add_special_tokens=False)
    context = f"The correct answer, which the user accepted, is exactly:\n{answer}"
    student = _response_log_probs(model, render(messages), response)
    teacher = _response_log_probs(model, teacher_prompt_ids(render, messages, context, "system"), response)
    delta = token_delta(teacher[None], student[None], torch.ones(1, len(response)), torch.tensor([True]))[0]
    title_start = len(tok.encode(answer[: answer.index("Fargo")].rstrip(), add_special_tokens=False))
    title = range(title_start, len(response))  # the tokens that name the item
    assert tok.decode(response[title_start:]).strip() == "Fargo"
    assert all(delta[i] > 0 for i in title), delta.tolist()
    assert delta.mean() > 0


def test_teacher_prompts_use_the_recipes_chat_template_arguments(tiny_model_path):
    from coars_verl.teacher_records import generation_prompt_ids

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    # a template that reads an extra argument, as Qwen3's reads enable_thinking
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% if not enable_thinking %}<think></think>{% endif %}{% endif %}"
    )
    with_kwargs = generation_prompt_ids(tok, MESSAGES, {"enable_thinking": True})
    assert with_kwargs == tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False, enable_thinking=True)
    assert with_kwargs != generation_prompt_ids(tok, MESSAGES, None)


def test_padding_records_are_two_masked_tokens_and_the_order_groups_lengths():
    """The teacher pass pads to the worker's batch multiple with two-token records that no loss or
    metric reads (masks 0), and sends records longest first per rank: a padded micro-batch then
    holds records of similar length."""
    sample = {"responses": torch.tensor([5, 6, 7]), "response_mask": torch.ones(3, dtype=torch.int64),
              "loss_mask": torch.ones(3, dtype=torch.int64), "position_ids": torch.arange(9)}
    pad = padding_record(sample, eos_token_id=2)
    assert pad["input_ids"].tolist() == [2, 2] and pad["prompts"].tolist() == [2]
    assert pad["response_mask"].tolist() == [0] and pad["loss_mask"].tolist() == [0]
    assert pad["position_ids"].tolist() == [0, 1] and pad["attention_mask"].tolist() == [1, 1]
    assert sample["responses"].tolist() == [5, 6, 7]  # the template is not modified

    lengths = [30, 2, 90, 2, 60, 10]
    assert scoring_order(lengths, dp_size=1) == [2, 4, 0, 5, 1, 3]
    two_ranks = scoring_order(lengths, dp_size=2)
    halves = [two_ranks[:3], two_ranks[3:]]
    assert sorted(two_ranks) == list(range(6))
    assert all([lengths[j] for j in half] == sorted((lengths[j] for j in half), reverse=True) for half in halves)
    assert abs(sum(lengths[j] for j in halves[0]) - sum(lengths[j] for j in halves[1])) <= 30  # balanced tokens


def test_the_teacher_batch_pads_fewer_rows_than_micro_batches_and_never_exceeds_the_configured_size():
    """10 records, one rank, micro-batch 8: two micro-batches of 5 (no padding row), where a
    multiple of 8 would send 6 padding rows computed at a real record's width."""
    assert teacher_batch_shape(10, dp_size=1, micro_batch_size=8) == (10, 5)
    assert teacher_batch_shape(11, dp_size=1, micro_batch_size=8) == (12, 6)
    assert teacher_batch_shape(3, dp_size=1, micro_batch_size=8) == (3, 3)
    assert teacher_batch_shape(17, dp_size=1, micro_batch_size=8) == (18, 6)
    assert teacher_batch_shape(5, dp_size=2, micro_batch_size=8) == (6, 3)
    assert teacher_batch_shape(5, dp_size=2, micro_batch_size=None) == (6, None)  # dynamic batch sizes: dp multiple only
    with pytest.raises(ValueError, match="num_records"):
        teacher_batch_shape(0, dp_size=1, micro_batch_size=8)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 500), st.integers(1, 8), st.integers(1, 64))
def test_teacher_batch_shape_properties(num_records, dp_size, micro):
    total, rows = teacher_batch_shape(num_records, dp_size, micro)
    sent_per_rank, real_per_rank = total // dp_size, math.ceil(num_records / dp_size)
    micro_batches = sent_per_rank // rows
    assert total >= num_records and total % (dp_size * rows) == 0  # verl's divisibility check passes
    assert rows <= micro  # no micro-batch larger than the configured one
    assert micro_batches == math.ceil(real_per_rank / micro)  # no more micro-batches than the configured size needs
    assert sent_per_rank - real_per_rank < micro_batches  # fewer padding rows per rank than micro-batches


def _record(prompt_len: int, response: list[int]) -> dict:
    sample = {"responses": torch.tensor(response), "response_mask": torch.ones(len(response), dtype=torch.int64),
              "loss_mask": torch.ones(len(response), dtype=torch.int64), "position_ids": torch.arange(prompt_len + len(response))}
    return teacher_record(sample, list(range(10, 10 + prompt_len)))


def _engine_answer(batch: TensorDict, order) -> TensorDict:
    """A worker's answer as verl's engine gives it: log-probs over each row's whole sequence,
    position p holding the log-prob of token p + 1, so response token t is at prompt_len - 1 + t;
    the values mark the record and t."""
    values = []
    for row, record in enumerate(order):
        sequence, response = batch["input_ids"][row].numel(), batch["response_mask"][row].numel()
        prompt = sequence - response
        values.append(torch.cat([torch.full((prompt - 1,), -1.0), 100.0 * record + torch.arange(response, dtype=torch.float), torch.tensor([-1.0])]))
    return TensorDict({"log_probs": torch.nested.nested_tensor(values, layout=torch.jagged)}, batch_size=[len(values)])


def test_the_teacher_batch_is_shaped_ordered_and_read_back_in_record_order():
    """teacher_batch sends the records longest first with padding and the per-call options;
    scored_log_probs hands each record its own rows back: a lost inverse of the scoring order, or a
    response cut at the wrong length, gives a record another's values."""
    records = [_record(p, list(range(1, r + 1))) for p, r in ((5, 3), (40, 2), (12, 6), (1, 1), (30, 4))]
    batch, order = teacher_batch(records, dp_size=1, micro_batch_size=4, eos_token_id=2, call_options={"temperature": 0.7})
    assert batch.batch_size[0] == len(order) == 6 and sorted(order) == list(range(6))  # 5 records: two micro-batches of 3
    lengths = [int(n) for n in batch["input_ids"].offsets().diff()]
    assert lengths == sorted(lengths, reverse=True) and lengths[-1] == 2  # longest first; the padding record last
    assert batch["temperature"] == 0.7 and batch["micro_batch_size_per_gpu"] == 3
    output = _engine_answer(batch, order)
    got = scored_log_probs(output, batch, order, len(records))
    assert [g.tolist() for g in got] == [[100.0 * j + t for t in range(r["responses"].numel())] for j, r in enumerate(records)]
    _, no_micro = teacher_batch(records, dp_size=2, micro_batch_size=None, eos_token_id=2, call_options={})
    assert len(no_micro) == 6  # dynamic batch sizes: the dp multiple only
    # two data-parallel ranks: verl's dispatch cuts the batch into contiguous chunks and concatenates the answers
    two, two_order = teacher_batch(records, dp_size=2, micro_batch_size=4, eos_token_id=2, call_options={})
    answers = [_engine_answer(chunk, two_order[k * 3:(k + 1) * 3]) for k, chunk in enumerate(tu.chunk_tensordict(two, 2))]
    got_two = scored_log_probs(tu.concat_tensordict(answers), two, two_order, len(records))
    assert [g.tolist() for g in got_two] == [g.tolist() for g in got]
    same_length, _ = teacher_batch([_record(4, [1, 2]), _record(4, [3, 4])], dp_size=1, micro_batch_size=2, eos_token_id=2, call_options={})
    assert all(same_length[key].is_nested for key in ("input_ids", "responses", "response_mask", "position_ids"))  # jagged, as verl's engine reads them
