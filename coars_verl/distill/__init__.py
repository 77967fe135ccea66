"""Teacher contexts and the per-user dialogue memory for self-distilled credit assignment.

Stdlib only: importing this package pulls in neither torch nor verl. The sources of a teacher
context are a registry (:mod:`coars_verl.distill.contexts`), one file each under
:mod:`coars_verl.distill.sources`. A dialogue is read through
:class:`coars_verl.dialogue.transcript.Transcript` (its stored summary's only reader).
"""

from coars_verl.distill.contexts import (
    DEFAULT_SOURCES,
    GroupMember,
    SampleEvidence,
    TeacherSource,
    first_teacher_context,
    register_teacher_source,
    teacher_source,
    teacher_source_names,
)
from coars_verl.distill.memory import DialogueMemory, compact_record

__all__ = [
    "DEFAULT_SOURCES",
    "DialogueMemory",
    "GroupMember",
    "SampleEvidence",
    "TeacherSource",
    "compact_record",
    "first_teacher_context",
    "register_teacher_source",
    "teacher_source",
    "teacher_source_names",
]
