"""Teacher contexts and the per-user dialogue memory for self-distilled credit assignment.

Stdlib only: importing this package pulls in neither torch nor verl.
"""

from coars_verl.distill.contexts import (
    DEFAULT_SOURCES,
    SOURCES,
    best_sibling_index,
    build_teacher_context,
    hindsight_context,
    memory_context,
    sibling_context,
    target_context,
)
from coars_verl.distill.memory import DialogueMemory, compact_record
from coars_verl.distill.summary import DialogueView, TurnView, view_summary

__all__ = [
    "DEFAULT_SOURCES",
    "SOURCES",
    "DialogueMemory",
    "DialogueView",
    "TurnView",
    "best_sibling_index",
    "build_teacher_context",
    "compact_record",
    "hindsight_context",
    "memory_context",
    "sibling_context",
    "target_context",
    "view_summary",
]
