"""The dialogue core: prompts, answer parsers, turn state machine, transcript. No verl imports."""
