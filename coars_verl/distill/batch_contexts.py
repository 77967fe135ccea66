"""Teacher prompts for a whole training batch (stdlib only; no verl, no torch).

For every real sample, the first available teacher context (memory, sibling, hindsight or
target: :func:`coars_verl.distill.contexts.build_teacher_context`) is put into the sample's own
prompt messages and rendered to token ids. Siblings are the other samples of the same
``(prompt uid, role)`` group, compared by their own role's reward.

A sample whose stored prompt is not the rendering of its messages gets no teacher: the teacher
must score exactly the tokens the student wrote after exactly the prompt it saw, and a prompt
that the renderer does not reproduce cannot be aligned safely.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Sequence

from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.contexts import build_teacher_context
from coars_verl.distill.single_turn import memory_context, single_turn_context
from coars_verl.distill.teacher_prompt import teacher_prompt_ids

Render = Callable[[list[dict[str, str]]], list[int]]


@dataclass
class BatchTeacherPrompts:
    prompts: dict[int, list[int]] = field(default_factory=dict)
    """Sample index -> token ids of its teacher prompt (only samples that have a context)."""
    sources: dict[int, str] = field(default_factory=dict)
    """Sample index -> the context source used."""
    mismatched: int = 0
    """Samples skipped because their stored prompt is not the rendering of their messages."""

    def source_counts(self) -> Counter:
        return Counter(self.sources.values())


def rendered_once(render: Render) -> Render:
    """``render`` remembering its results by the messages' content, for one batch: the samples of a
    recommender group share their prompt, and with the memory source their teacher prompt too."""
    cache: dict[str, list[int]] = {}

    def cached(messages: list[dict[str, str]]) -> list[int]:
        key = json.dumps(list(messages), sort_keys=True, default=str)
        if key not in cache:
            cache[key] = list(render(messages))
        return cache[key]

    return cached


def role_groups(uids: Sequence[Hashable], roles: Sequence[str], real: Sequence[bool]) -> dict[tuple, list[int]]:
    """Indices of the real (non-padding) samples per ``(prompt uid, role)``, in batch order: the
    estimator's groups, so a recommender's siblings are never the user agent's samples."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (uid, role, is_real) in enumerate(zip(uids, roles, real)):
        if is_real:
            groups[(uid, role)].append(i)
    return dict(groups)


def batch_teacher_prompts(
    uids: Sequence[Hashable],
    roles: Sequence[str],
    transcripts: Sequence[Transcript | None],
    role_scores: Sequence[float],
    prompt_messages: Sequence[Sequence[Mapping[str, str]]],
    student_prompts: Sequence[Sequence[int] | None],
    real: Sequence[bool],
    render: Render,
    cfg: Any,
    memory: Any = None,
    step: int | None = None,
    wanted: Sequence[bool] | None = None,
    histories: Sequence[Sequence[Any] | None] | None = None,
) -> BatchTeacherPrompts:
    """Teacher prompt ids for the samples of a batch that have a teacher context.

    Args:
        uids, roles, transcripts, role_scores, prompt_messages, student_prompts, real: one entry per
            sample (B): prompt uid, role, its dialogue (None allowed for verl's padding), the sample's
            own-role reward, the chat messages it was prompted with, the token ids of that prompt
            (None allowed where not wanted), False for verl's padding.
        render: chat messages -> generation-prompt token ids (the tokenizer's chat template).
        cfg: a ``SelfDistillConfig`` (sources, memory_k, context_max_chars, context_position).
        memory, step: the dialogue memory and the current step (memory source).
        wanted: the samples whose credit can use a teacher (None: all); the others are still siblings.
        histories: each sample's user's history item ids (neighbor source; None: no neighbours).
    """
    out, render = BatchTeacherPrompts(), rendered_once(render)
    for members in role_groups(uids, roles, real).values():
        group = [(transcripts[j], role_scores[j]) for j in members]
        for position, i in enumerate(members):
            if wanted is not None and not wanted[i]:
                continue
            text, source = build_teacher_context(
                roles[i], group[position][0], cfg.sources, memory=memory, group=group, self_index=position,
                step=step, memory_k=cfg.memory_k, max_chars=cfg.context_max_chars,
                history=histories[i] if histories is not None else None,
            )
            _add_teacher_prompt(out, i, text, source, prompt_messages[i], student_prompts[i], render, cfg)
    return out


def single_turn_teacher_prompts(
    uids: Sequence[Hashable],
    responses: Sequence[str],
    scores: Sequence[float],
    ground_truths: Sequence[Any],
    prompt_messages: Sequence[Sequence[Mapping[str, str]]],
    student_prompts: Sequence[Sequence[int]],
    real: Sequence[bool],
    render: Render,
    cfg: Any,
    memory_keys: Sequence[Any] | None = None,
    memory: Any = None,
    step: int | None = None,
    wanted: Sequence[bool] | None = None,
) -> BatchTeacherPrompts:
    """Teacher prompt ids for a batch of a single-turn verl task (:mod:`coars_verl.distill.single_turn`).

    Args:
        uids, responses, scores, ground_truths, prompt_messages, student_prompts, real: one entry per
            sample (B): prompt uid, decoded response, reward, the data's ground truth (or None), the chat
            messages it was prompted with, the token ids of that prompt, False for verl's padding.
        memory_keys, memory, step: each sample's value of ``cfg.memory_key`` (None: no memory), the
            store and the current step (only earlier steps are shown).
        wanted: the samples whose credit can use a teacher (None: all); the others are still siblings.
    """
    out, render = BatchTeacherPrompts(), rendered_once(render)
    for members in role_groups(uids, ["single"] * len(uids), real).values():
        group_responses, group_scores = [responses[j] for j in members], [scores[j] for j in members]
        for position, i in enumerate(members):
            if wanted is not None and not wanted[i]:
                continue
            memory_text = None
            if memory is not None and memory_keys is not None and cfg.memory_k > 0:
                records = memory.select(memory_keys[i], cfg.memory_k, before_step=step)
                memory_text = memory_context(records, cfg.memory_key, cfg.context_max_chars)
            text, source = single_turn_context(cfg.sources, group_responses, group_scores, position, ground_truths[i],
                                               cfg.context_max_chars, memory_text)
            _add_teacher_prompt(out, i, text, source, prompt_messages[i], student_prompts[i], render, cfg)
    return out


def _add_teacher_prompt(out: BatchTeacherPrompts, i: int, text: str | None, source: str | None, messages, student_prompt,
                        render: Render, cfg: Any) -> None:
    if not text:
        return
    if list(render(list(messages))) != list(student_prompt):
        out.mismatched += 1
        return
    out.prompts[i] = teacher_prompt_ids(render, messages, text, cfg.context_position)
    out.sources[i] = source
