"""Dialogue summaries shared by the distill tests, played through the real state machine (the one
format a dialogue travels in: ``Transcript.summary()``)."""

import pytest

from distill_fakes import played


@pytest.fixture
def miss_summary():
    """u1: rejects two items, one invalid turn, then accepts a wrong item."""
    return played("u1", [
        ("Toy Story", "you liked Pixar", "no", "too childish for me"),
        (None, "garbled", None, ""),
        ("Titanic", "popular drama", "no", "I avoid romance"),
        ("Heat", "you watch thrillers", "yes", "I like crime films"),
    ])


@pytest.fixture
def hit_summary():
    """u1: hit at turn 2."""
    return played("u1", [
        ("Titanic", "popular drama", "no", "I avoid romance"),
        ("Alien", "you watched Aliens", "yes", "sci-fi horror is my thing"),
    ])


@pytest.fixture
def hit_turn1_summary():
    return played("u1", [("Alien", "sci-fi fan", "yes", "love it")])
