"""The dialogue core: prompts, answer parsers, turn state machine, transcript. No verl imports.

* ``prompts``: overridable role prompt templates and the agents' first messages;
* ``matching``: text hygiene for untrusted model output and exact (normalised) title lookup;
* ``parsers``: ``parse_recommendation`` / ``parse_decision``, total functions over any ``str``;
* ``state``: ``DialogueSample``, ``DialogueConfig`` and the ``Dialogue`` state machine;
* ``transcript``: the immutable ``Transcript`` and its JSON-serialisable ``summary()``.
"""
