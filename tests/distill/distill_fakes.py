"""Playing a scripted dialogue for the distill tests (the one format a dialogue travels in:
``Transcript.summary()``)."""

from coars_verl.constants import ROLE_RECOMMENDER, ROLE_USER
from coars_verl.dialogue.state import Dialogue, DialogueConfig, DialogueSample

CANDIDATES = ("Toy Story", "Titanic", "Heat", "Alien")


def played(user_id, answers, max_turns=4, target="Alien", user_first_of=None):
    """The summary of a dialogue of ``user_id`` about :data:`CANDIDATES` (target ``target``).

    ``answers``: one ``(item, rec_reason, decision, user_reason)`` per turn; ``item`` None is an
    invalid recommendation (the user does not answer); ``decision`` is "yes" or "no"."""
    sample = DialogueSample(user_id=user_id, history_titles=("Aliens",), candidate_titles=CANDIDATES,
                            candidate_item_ids=tuple(f"i{k}" for k in range(len(CANDIDATES))),
                            target_title=target, target_item_id=f"i{CANDIDATES.index(target)}")
    dialogue = Dialogue(sample, DialogueConfig(max_turns=max_turns))
    for item, rec_reason, decision, user_reason in answers:
        dialogue.submit(ROLE_RECOMMENDER, f"Reason: {rec_reason}\nItem: {item}" if item else rec_reason)
        if item:
            dialogue.submit(ROLE_USER, f"Reason: {user_reason}\nDecision: {decision}")
    assert dialogue.done
    return dialogue.transcript.summary()


def evidence(role, dialogue, group=None, position=0, **options):
    """The :class:`SampleEvidence` of one dialogue sample. ``group``: ``(summary or transcript, reward)``
    of every dialogue of its group, itself at ``position`` (default: the sample alone, reward 0);
    ``options``: the other fields (memory, step, memory_k, max_chars, item_history, ...)."""
    from coars_verl.dialogue.transcript import Transcript
    from coars_verl.distill.contexts import GroupMember, SampleEvidence

    own = Transcript.read(dialogue)
    members = [GroupMember(reward, Transcript.read(d)) for d, reward in group] if group else [GroupMember(0.0, own)]
    options.setdefault("memory_key", own.user_id)
    return SampleEvidence(role=role, group=members, position=position, **options)


def context(source, role, dialogue, **kwargs):
    """The registered ``source``'s text for a dialogue sample (:func:`evidence`'s arguments)."""
    from coars_verl.distill.contexts import teacher_source

    return teacher_source(source).dialogue(evidence(role, dialogue, **kwargs))


def first_context(role, dialogue, sources=None, **kwargs):
    """``first_teacher_context`` over ``sources`` (default: the default order) for a dialogue sample."""
    from coars_verl.distill.contexts import DEFAULT_SOURCES, first_teacher_context

    return first_teacher_context(DEFAULT_SOURCES if sources is None else sources, evidence(role, dialogue, **kwargs))
