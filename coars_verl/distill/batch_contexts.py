"""Teacher prompts for a whole training batch (stdlib only; no verl, no torch).

For every real sample that wants one, the first available teacher context
(:func:`coars_verl.distill.contexts.first_teacher_context`) is put into the sample's own prompt
messages and rendered to token ids. A sample's group is the other samples of its
``(prompt uid, role)`` group, compared by their own role's reward: the estimator's groups, so a
recommender's siblings are never the user agent's samples. Dialogue batches and single-turn
batches go through the same steps; only what a sample carries differs (a transcript or an answer).

A sample whose stored prompt is not the rendering of its messages gets no teacher: the teacher
must score exactly the tokens the student wrote after exactly the prompt it saw, and a prompt
that the renderer does not reproduce cannot be aligned safely.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Optional, Sequence

from coars_verl.dialogue.transcript import Transcript
from coars_verl.distill.contexts import GroupMember, SampleEvidence, first_teacher_context
from coars_verl.distill.teacher_prompt import teacher_prompt_ids

Render = Callable[[list[dict[str, str]]], list[int]]


@dataclass(frozen=True)
class StudentSample:
    """One trained sample as the teacher pass sees it."""

    uid: Hashable
    """Its prompt uid (with ``role``, its group)."""
    role: str
    reward: float
    """Its own role's reward."""
    messages: Sequence[Mapping[str, str]]
    """The chat messages it was prompted with."""
    prompt_ids: Optional[Sequence[int]] = None
    """The token ids of that prompt as stored (None where no teacher is wanted)."""
    transcript: Optional[Transcript] = None
    """Its dialogue (dialogue tasks)."""
    answer: Optional[str] = None
    """Its decoded response (single-turn tasks)."""
    memory_key: Any = None
    """Whose memory it reads: the dialogue's user id, or its row's ``self_distill.memory_key`` value."""
    item_history: Optional[Sequence[Any]] = None
    """Its user's history item ids (read only when a configured source needs them)."""
    ground_truth: Any = None
    """A single-turn row's ``reward_model.ground_truth``."""
    wanted: bool = True
    """Whether its credit can use a teacher (:func:`coars_verl.algo.advantage.teacher_needed`); a
    sample not wanted still serves as a sibling."""


@dataclass
class BatchTeacherPrompts:
    prompts: dict[int, list[int]] = field(default_factory=dict)
    """Sample index -> token ids of its teacher prompt (only samples that have a context)."""
    sources: dict[int, str] = field(default_factory=dict)
    """Sample index -> the context source used."""
    texts: dict[int, str] = field(default_factory=dict)
    """Sample index -> the context's text."""
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


def role_groups(samples: Sequence[Optional[StudentSample]]) -> dict[tuple, list[int]]:
    """Indices of the real samples (None is verl's padding) per ``(prompt uid, role)``, in batch order."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        if sample is not None:
            groups[(sample.uid, sample.role)].append(i)
    return dict(groups)


def batch_teacher_prompts(samples: Sequence[Optional[StudentSample]], render: Render, cfg: Any, memory: Any = None,
                          step: Optional[int] = None) -> BatchTeacherPrompts:
    """Teacher prompt ids for the samples of a batch that want one and have a teacher context.

    Args:
        samples: one per batch row (B); None for verl's padding rows.
        render: chat messages -> generation-prompt token ids (the tokenizer's chat template).
        cfg: a ``SelfDistillConfig`` (sources, memory_k, memory_key, context_max_chars, context_position).
        memory, step: the dialogue memory and the current step (only earlier steps are shown).
    """
    out, render = BatchTeacherPrompts(), rendered_once(render)
    for members in role_groups(samples).values():
        group = [GroupMember(samples[j].reward, samples[j].transcript, samples[j].answer) for j in members]
        for position, i in enumerate(members):
            sample = samples[i]
            if not sample.wanted:
                continue
            evidence = SampleEvidence(
                role=sample.role, group=group, position=position, memory=memory, memory_key=sample.memory_key,
                memory_key_name=cfg.memory_key or "user", step=step, item_history=sample.item_history,
                ground_truth=sample.ground_truth, memory_k=cfg.memory_k, max_chars=cfg.context_max_chars,
            )
            text, source = first_teacher_context(cfg.sources, evidence)
            if not text:
                continue
            if list(render(list(sample.messages))) != list(sample.prompt_ids or ()):
                out.mismatched += 1
                continue
            out.prompts[i] = teacher_prompt_ids(render, sample.messages, text, cfg.context_position)
            out.sources[i], out.texts[i] = source, text
    return out
