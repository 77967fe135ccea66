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
