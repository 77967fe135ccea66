"""Teacher contexts and the per-user dialogue memory for self-distilled credit assignment.

Stdlib only: importing this package pulls in neither torch nor verl. A dialogue is read through
:class:`coars_verl.dialogue.transcript.Transcript` (its stored summary's only reader).
"""

from coars_verl.distill.contexts import (
    DEFAULT_SOURCES,
    SOURCES,
    best_sibling_index,
    build_teacher_context,
    hindsight_context,
    memory_context,
    neighbor_context,
    sibling_context,
    target_context,
)
from coars_verl.distill.memory import DialogueMemory, compact_record

__all__ = [
    "DEFAULT_SOURCES",
    "SOURCES",
    "DialogueMemory",
    "best_sibling_index",
    "build_teacher_context",
    "compact_record",
    "hindsight_context",
    "memory_context",
    "neighbor_context",
    "sibling_context",
    "target_context",
]
