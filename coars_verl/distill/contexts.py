"""Teacher contexts h for self-distilled credit assignment: the registry of their sources.

The teacher scores the student's own tokens with the student's context s PLUS a privileged text h
(docs/method.md, "One training step", step 2). Each source of h is one registered
:class:`TeacherSource` (modelled on verl's registered advantage estimators), defined in a file of
its own under :mod:`coars_verl.distill.sources`: its name, what it needs, whether it has anything
to say on a single-turn task, and its builders. A builder reads one :class:`SampleEvidence` (all
that a source may know about one sample) and returns the text, or ``None`` when it has nothing.

:func:`first_teacher_context` tries the configured sources in order and returns the first text.
A name that is not registered is an error listing the registered names: no name falls through to
another source's builder.

Pure stdlib: no torch, no verl.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from coars_verl.constants import ROLE_SINGLE, check_role
from coars_verl.dialogue.transcript import Transcript

DEFAULT_SOURCES = ("memory", "sibling", "hindsight")
"""Default fallback order (``algorithm.coars.self_distill.sources``); ``target`` leaks the answer and
is never on by default, ``neighbor`` is an ablation."""
DEFAULT_MAX_CHARS = 1000
"""A context's character budget (``algorithm.coars.self_distill.context_max_chars``)."""
DEFAULT_MEMORY_K = 2
"""Past dialogues (or other users) a memory-type source shows (``self_distill.memory_k``)."""

NEEDS_DIALOGUE = "dialogue"
"""The sample's own played dialogue (a ``coars_dialogue`` sample; single-turn samples have none)."""
NEEDS_GROUP = "group"
"""The other samples of its (prompt uid, role) group in this step, with their rewards."""
NEEDS_MEMORY = "memory"
"""The dialogue memory of earlier steps (on a single-turn task: keyed by ``self_distill.memory_key``)."""
NEEDS_ITEM_HISTORY = "item_history"
"""The user's history as item ids (the data's ``extra_info``)."""
NEEDS_GROUND_TRUTH = "ground_truth"
"""The answer itself (the dialogue's target item, a single-turn task's ``reward_model.ground_truth``)."""
NEEDS = (NEEDS_DIALOGUE, NEEDS_GROUP, NEEDS_MEMORY, NEEDS_ITEM_HISTORY, NEEDS_GROUND_TRUTH)
USER_ONLY_NEEDS = frozenset({NEEDS_MEMORY, NEEDS_ITEM_HISTORY})
"""A source that needs no more than these knows only the user, not this sample: the evaluation's
Reflexion-style baseline can put it into a prompt at test time."""


@dataclass(frozen=True)
class GroupMember:
    """One sample of a (prompt uid, role) group as a source sees it: its own role's reward and what it
    produced (a played dialogue, or a single-turn task's decoded answer)."""

    reward: float
    transcript: Optional[Transcript] = None
    answer: Optional[str] = None


@dataclass(frozen=True)
class SampleEvidence:
    """Everything a teacher source may read about one sample; one object, so a new source needs no
    new parameter anywhere between the trainer and its builder."""

    role: str
    """``recommender`` or ``user`` in a dialogue, ``single`` on a single-turn task."""
    group: Sequence[GroupMember]
    """Every sample of its (prompt uid, role) group in this step, the sample itself included."""
    position: int
    """The sample's own index in ``group``."""
    memory: Any = None
    """A :class:`coars_verl.distill.memory.DialogueMemory`, or None."""
    memory_key: Any = None
    """Whose memory is this sample's: the dialogue's user id, or the single-turn row's ``memory_key`` value."""
    memory_key_name: str = "user"
    """What ``memory_key`` names, for a single-turn context's header (the ``extra_info`` key)."""
    step: Optional[int] = None
    """The current training step: only memory records of earlier steps are shown."""
    item_history: Optional[Sequence[Any]] = None
    """The user's history item ids (neighbor source)."""
    ground_truth: Any = None
    """A single-turn task's ``reward_model.ground_truth`` (a dialogue's target is in its transcript)."""
    memory_k: int = DEFAULT_MEMORY_K
    max_chars: Optional[int] = DEFAULT_MAX_CHARS

    def __post_init__(self) -> None:
        if self.role != ROLE_SINGLE:
            check_role(self.role)
        if not 0 <= self.position < len(self.group):
            raise IndexError(f"position {self.position} out of range for a group of {len(self.group)}")

    @property
    def own(self) -> GroupMember:
        return self.group[self.position]

    @property
    def transcript(self) -> Optional[Transcript]:
        """The sample's dialogue; None on a single-turn task."""
        return self.own.transcript


Builder = Callable[[SampleEvidence], Optional[str]]


@dataclass(frozen=True)
class TeacherSource:
    """One source of teacher contexts. Register it with :func:`register_teacher_source`."""

    name: str
    summary: str
    """One line for the docs table and the ablation recipe's header."""
    needs: tuple[str, ...]
    """What the builders read (names from :data:`NEEDS`): the driver check and the evaluation use it."""
    headers: Mapping[str, str]
    """The first line of a context, per reader role (``recommender``, ``user``, ``single``)."""
    dialogue: Optional[Builder]
    """Text for a sample of a ``coars_dialogue`` batch (None: nothing to say on dialogues)."""
    single_turn: Optional[Builder] = None
    """Text for a sample of a single-turn verl task (None: nothing to say without a dialogue)."""
    leaks_answer: bool = False
    """Shows the answer itself: an upper bound for ablations, never a default."""

    def __post_init__(self) -> None:
        unknown = [need for need in self.needs if need not in NEEDS]
        if unknown:
            raise ValueError(f"teacher source {self.name!r}: unknown needs {unknown}; expected some of {NEEDS}")
        if self.dialogue is None and self.single_turn is None:
            raise ValueError(f"teacher source {self.name!r} has no builder")

    @property
    def user_only(self) -> bool:
        """Needs nothing of the sample but its user (:data:`USER_ONLY_NEEDS`): usable at evaluation."""
        return self.dialogue is not None and set(self.needs) <= USER_ONLY_NEEDS

    def builder(self, on_dialogue: bool) -> Optional[Builder]:
        return self.dialogue if on_dialogue else self.single_turn


_REGISTRY: dict[str, TeacherSource] = {}


def register_teacher_source(source: TeacherSource) -> TeacherSource:
    """Add ``source`` to the registry (a name can be registered once; the same object again is a no-op,
    as module re-imports do)."""
    known = _REGISTRY.get(source.name)
    if known is not None and known is not source:
        raise ValueError(f"a teacher source named {source.name!r} is registered already")
    _REGISTRY[source.name] = source
    return source


def unregister_teacher_source(name: str) -> None:
    """Remove a registered source (for tests that register a throwaway one)."""
    _REGISTRY.pop(name, None)


def _registry() -> dict[str, TeacherSource]:
    importlib.import_module("coars_verl.distill.sources")  # the built-in sources register on import
    return _REGISTRY


def teacher_source_names() -> tuple[str, ...]:
    """The registered sources' names, in registration order."""
    return tuple(_registry())


def teacher_source(name: str) -> TeacherSource:
    """The registered source ``name``; ValueError naming the registered ones otherwise."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown teacher-context source {name!r}; registered: {list(registry)}")
    return registry[name]


def user_only_source_names() -> tuple[str, ...]:
    """The sources that need only the user (:attr:`TeacherSource.user_only`): the evaluation's choices."""
    return tuple(name for name, source in _registry().items() if source.user_only)


def first_teacher_context(sources: Sequence[str], evidence: SampleEvidence) -> tuple[Optional[str], Optional[str]]:
    """``(text, source name)`` of the first source in ``sources`` that has something for the sample,
    or ``(None, None)`` (then its delta is 0). Every name is checked first, so a misspelt source fails
    whether or not an earlier one answers. A source without a builder for the sample's kind (a
    dialogue role, or ``single`` on a single-turn task) is passed over."""
    chosen = [teacher_source(name) for name in sources]
    on_dialogue = evidence.role != ROLE_SINGLE
    for source in chosen:
        build = source.builder(on_dialogue)
        text = build(evidence) if build is not None else None
        if text:
            return text, source.name
    return None, None
