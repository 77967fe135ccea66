"""The teacher pass's input for verl's log-prob workers (the only verl-shaped part of it).

A teacher record is the student's stored sample with the prompt replaced by the teacher prompt:
``input_ids = teacher prompt + the student's own response``, so verl's ``compute_log_prob``
returns log-probs of exactly the tokens the student wrote, after the context-enriched prompt.
:func:`teacher_batch` turns the records into the one TensorDict the worker group is called with,
and :func:`scored_log_probs` reads its answer back in the records' order.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from tensordict import TensorDict
from verl.trainer.ppo.padding_utils import build_padding_position_ids
from verl.utils import tensordict_utils as tu
from verl.utils.seqlen_balancing import calculate_workload, get_seqlen_balanced_partitions
from verl.workers.utils.padding import response_from_nested


def generation_prompt_ids(tokenizer, messages, chat_template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
    """Token ids of ``messages`` rendered as a generation prompt, with the same chat-template
    arguments (``data.apply_chat_template_kwargs``, e.g. ``enable_thinking``) that verl's agent
    loop renders the student's prompt with; without them the two renderings differ and no sample
    gets a teacher."""
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, return_dict=False,
                                        **dict(chat_template_kwargs or {}))
    return list(ids)


RECORD_FIELDS = ("responses", "response_mask", "loss_mask", "position_ids", "multi_modal_inputs")
"""What a teacher record takes from the stored sample; the prompt, input ids, attention mask and
positions are rebuilt. Fetching only these (not the sample's dialogue summary, scores and raw
prompt) keeps the one read from TransferQueue short."""


def teacher_record(sample: Mapping[str, Any], teacher_prompt: Sequence[int]) -> dict[str, Any]:
    """A copy of one stored sample (verl's per-sample fields: ``responses``, ``position_ids``, ...)
    whose prompt is ``teacher_prompt``; the response tokens and every other field are kept."""
    record = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in sample.items()}
    prompt_ids = torch.tensor(list(teacher_prompt), dtype=torch.int64)
    input_ids = torch.cat([prompt_ids, record["responses"]])
    attention_mask = torch.ones_like(input_ids)
    record.update(
        prompts=prompt_ids,
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=build_padding_position_ids(record.get("position_ids"), attention_mask),
    )
    return record


def teacher_batch_shape(num_records: int, dp_size: int, micro_batch_size: int | None) -> tuple[int, int | None]:
    """``(records to send, real plus padding; micro-batch size to score them with)``.

    Without dynamic batch sizes verl's engine cuts each data-parallel rank's share into equal
    micro-batches of ``micro_batch_size`` rows, each padded to its longest row. Sending a multiple of
    the configured size would turn e.g. 10 records into 16, and the 6 padding rows of the second
    micro-batch would be computed at the width of its longest real record. Instead each rank gets
    as many micro-batches as the configured size needs, ``k = ceil(per_rank / micro_batch_size)``,
    of ``ceil(per_rank / k) <= micro_batch_size`` rows: fewer than ``k`` padding rows per rank, and
    no micro-batch larger than the configured one. ``micro_batch_size`` None (dynamic batch sizes:
    micro-batches by tokens) needs only the data-parallel multiple and returns None.
    """
    if num_records < 1 or dp_size < 1:
        raise ValueError(f"teacher_batch_shape: num_records {num_records} and dp_size {dp_size} must be >= 1")
    per_rank = -(-num_records // dp_size)
    if micro_batch_size is None:
        return per_rank * dp_size, None
    if micro_batch_size < 1:
        raise ValueError(f"teacher_batch_shape: micro_batch_size {micro_batch_size} must be >= 1")
    micro_batches = -(-per_rank // micro_batch_size)
    rows = -(-per_rank // micro_batches)
    return micro_batches * rows * dp_size, rows


def padding_record(template: Mapping[str, Any], eos_token_id: int) -> dict[str, Any]:
    """A no-op record of two tokens (``eos`` prompt, ``eos`` response, masks 0) with ``template``'s
    other fields, to fill the scoring worker's batch multiple. verl's own padding
    (``upsample_batch_to_divisible_size``) adds 128-token sequences, which a padded micro-batch
    then computes in full."""
    eos = torch.tensor([eos_token_id], dtype=torch.int64)
    shell = {**template, "responses": eos, "response_mask": torch.zeros_like(eos)}
    if "loss_mask" in template:
        shell["loss_mask"] = torch.zeros_like(eos)
    return teacher_record(shell, [eos_token_id])


def scoring_order(seq_lens: Sequence[int], dp_size: int) -> list[int]:
    """Record indices in the order to send them: token-balanced equal-size partitions, one per
    data-parallel rank, each longest first, so that consecutive records (one micro-batch) have
    similar lengths and a padded micro-batch wastes little."""
    workload = calculate_workload(torch.tensor(list(seq_lens), dtype=torch.int64))
    partitions = get_seqlen_balanced_partitions(workload, k_partitions=dp_size, equal_size=True)
    return [j for partition in partitions for j in sorted(partition, key=lambda j: -seq_lens[j])]


def teacher_batch(records: Sequence[Mapping[str, Any]], dp_size: int, micro_batch_size: int | None, eos_token_id: int,
                  call_options: Mapping[str, Any]) -> tuple[TensorDict, list[int]]:
    """The worker group's input for scoring ``records``: ``(batch, order)``.

    ``batch`` holds the records and the padding records of :func:`teacher_batch_shape`, in
    :func:`scoring_order` (row ``k`` is record ``order[k]``; indices past ``len(records)`` are
    padding), with ``call_options`` (verl's per-call keys: ``calculate_entropy``, ``temperature``,
    ...) and the micro-batch size as non-tensor data. Sent to the workers directly, not through
    TransferQueue: the records live for one call, and storing them cost a put, a read in the
    worker, a write of the results, a read and a clear.
    """
    total, rows = teacher_batch_shape(len(records), dp_size, micro_batch_size)
    padded = list(records) + [padding_record(records[0], eos_token_id)] * (total - len(records))
    order = scoring_order([int(r["input_ids"].numel()) for r in padded], dp_size)
    batch = tu.list_of_dict_to_tensordict([padded[j] for j in order])
    for key, value in list(batch.items()):
        # verl stacks a field whose rows happen to be of one length; its engine reads token fields as jagged
        if isinstance(value, torch.Tensor) and not value.is_nested and value.dim() == 2:
            batch[key] = torch.nested.as_nested_tensor(list(value.unbind()), layout=torch.jagged)
    options = dict(call_options)
    if rows is not None:  # verl's engine takes a per-call size before its configured one
        options["micro_batch_size_per_gpu"] = rows
    tu.assign_non_tensor(batch, **options)
    return batch, order


def scored_log_probs(output: TensorDict, batch: TensorDict, order: Sequence[int], num_records: int) -> list[torch.Tensor]:
    """Each real record's ``(response_len,)`` float log-probs from the worker's ``output`` for
    ``batch`` (:func:`teacher_batch`), in the records' own order."""
    rows = response_from_nested(output["log_probs"], batch["response_mask"]).unbind()  # row k: its response's tokens
    row_of = {record: row for row, record in enumerate(order)}
    return [rows[row_of[j]].float() for j in range(num_records)]
