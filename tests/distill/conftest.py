"""Hand-written dialogue summaries shared by the distill tests."""

import pytest


def turn(t, item, decision, user_reason="", rec_reason="", valid=True):
    return {"turn": t, "item_title": item, "rec_reason": rec_reason, "valid": valid,
            "decision": decision, "user_reason": user_reason}


@pytest.fixture
def miss_summary():
    """u1: rejects two items, one invalid turn, then accepts a wrong item."""
    return {
        "user_id": "u1", "turns": 4, "hit": False, "final_item_title": "Heat", "target_title": "Alien",
        "turn_records": [
            turn(1, "Toy Story", "no", "too childish for me", "you liked Pixar"),
            turn(2, None, None, "", "garbled", valid=False),
            turn(3, "Titanic", "no", "I avoid romance", "popular drama"),
            turn(4, "Heat", "yes", "I like crime films", "you watch thrillers"),
        ],
    }


@pytest.fixture
def hit_summary():
    """u1: hit at turn 2."""
    return {
        "user_id": "u1", "turns": 2, "hit": True, "final_item_title": "Alien", "target_title": "Alien",
        "turn_records": [
            turn(1, "Titanic", "no", "I avoid romance", "popular drama"),
            turn(2, "Alien", "yes", "sci-fi horror is my thing", "you watched Aliens"),
        ],
    }


@pytest.fixture
def hit_turn1_summary():
    return {
        "user_id": "u1", "turns": 1, "hit": True, "final_item_title": "Alien", "target_title": "Alien",
        "turn_records": [turn(1, "Alien", "yes", "love it", "sci-fi fan")],
    }
