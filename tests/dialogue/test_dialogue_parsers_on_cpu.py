"""Answer parsers on hand-written answers: what is accepted, and the error code of everything else."""

import pytest

from coars_verl.dialogue.matching import CandidateIndex, loose_key, title_key
from coars_verl.dialogue.parsers import AnswerError, parse_decision, parse_recommendation

CANDIDATES = [
    "The Matrix",  # 1
    "Toy Story",  # 2
    "1917",  # 3: a title that is a number
    "Airplane!",  # 4
    "12",  # 5: a title that is a small number
    "Hamlet",  # 6: duplicated title
    "Hamlet",  # 7
    "2001: A Space Odyssey",  # 8
    "Se7en",  # 9
]


def rec(text, numbered=True, already=()):
    return parse_recommendation(text, CANDIDATES, numbered=numbered, already_recommended=already)


# ---- recommender: accepted forms


@pytest.mark.parametrize(
    "text, index",
    [
        ("Reason: a classic.\nItem: The Matrix", 0),
        ("reason: a classic.\nitem: the matrix", 0),
        ("REASON: x\nITEM:   THE   MATRIX  ", 0),
        ("**Reason:** x\n**Item:** The Matrix", 0),
        ("**Reason**: x\n**Item**: **The Matrix**", 0),
        ("- Reason: x\n- Item: `Toy Story`", 1),
        ("* Item: \"Toy Story\"", 1),
        ("> Item: \u201cToy Story\u201d", 1),
        ("1. Reason: x\n2. Item: Toy Story", 1),
        ("Item\uff1a Toy Story", 1),  # full-width colon
        ("Item: <Toy Story>", 1),
        ("Item: [Toy Story]", 1),
        ("Sure! Here is my answer.\nReason: x\nItem: Toy Story\nHope you enjoy it!", 1),
        ("Item:\n\n   Toy Story\n", 1),  # value on the next line
        ("Reason: x Item: Toy Story", 1),  # one-line answer
        ("Final item: Toy Story", 1),
        ("Recommendation: Toy Story", 1),
        ("Item: airplane", 3),  # punctuation-normalised
        ("Item: AIRPLANE!", 3),
        ("Item: 2001 A Space Odyssey", 7),
        ("Item: se7en.", 8),
        ("Item: The Ma\u200btrix", 0),  # zero-width characters are invisible noise
        ("<think>Maybe Item: Toy Story?</think>\nReason: x\nItem: The Matrix", 0),
    ],
)
def test_accepted_recommendations(text, index):
    answer = rec(text)
    assert answer.valid, answer
    assert answer.item_index == index
    assert answer.item_title == CANDIDATES[index]
    assert answer.problem == ""


def test_reason_is_extracted_up_to_the_item_line():
    answer = rec("Reason: You liked\n  sci-fi films.\nItem: The Matrix\nEnjoy!")
    assert answer.reason == "You liked sci-fi films."


def test_reason_after_the_item_line_is_used_when_none_precedes():
    assert rec("Item: The Matrix\nReason: sci-fi").reason == "sci-fi"


def test_without_reason_label_the_text_before_the_item_stands_in():
    assert rec("You like action films.\nItem: The Matrix").reason == "You like action films."


def test_reason_is_capped():
    answer = parse_recommendation("Reason: " + "word " * 1000 + "\nItem: The Matrix", CANDIDATES, max_reason_chars=50)
    assert answer.valid and len(answer.reason) == 50 and answer.reason.endswith("\u2026")


# ---- numbered references


@pytest.mark.parametrize(
    "text, index",
    [
        ("Item: 2", 1),
        ("Item: #2", 1),
        ("Item: 2.", 1),
        ("Item: 2)", 1),
        ("Item: 2. Toy Story", 1),
        ("Item: 2 - toy story", 1),
    ],
)
def test_numbered_references(text, index):
    answer = rec(text)
    assert answer.valid and answer.item_index == index


def test_titles_win_over_numbers():
    # "12" is candidate 5's title and also a (non-existent) candidate number 12: the title wins.
    assert rec("Item: 12").item_index == 4
    assert rec("Item: 1917").item_index == 2


def test_a_title_that_is_also_an_in_range_number_names_the_title():
    # AFL's LastFM has artists titled "3", "112", "311": with numbered candidates "Item: 3" could be
    # candidate 3 or the artist "3". The title wins (the answer names a candidate exactly); to use the
    # number, write it with the title ("3. Coldplay").
    artists = ["Muse", "Blur", "Coldplay", "3", "112"]
    assert parse_recommendation("Item: 3", artists).item_index == 3
    assert parse_recommendation("Item: 3. Coldplay", artists).item_index == 2
    assert parse_recommendation("Item: 2", artists).item_index == 1
    assert parse_recommendation("Item: 112", artists).item_index == 4


def test_number_and_title_must_agree():
    answer = rec("Item: 1. Toy Story")
    assert answer.error is AnswerError.NUMBER_TITLE_MISMATCH
    assert answer.item_index is None
    assert "Candidate number 1 is 'The Matrix'" in answer.problem


def test_number_out_of_range():
    answer = rec("Item: 42")
    assert answer.error is AnswerError.NOT_IN_CANDIDATES
    assert "numbered 1 to 9" in answer.problem


def test_numbers_are_titles_only_when_the_list_is_not_numbered():
    assert rec("Item: 2", numbered=False).error is AnswerError.NOT_IN_CANDIDATES
    assert rec("Item: 12", numbered=False).item_index == 4


def test_huge_numbers_do_not_hit_int_limits():
    answer = rec("Item: " + "9" * 10_000)
    assert answer.error is AnswerError.NOT_IN_CANDIDATES


# ---- recommender: rejected forms


@pytest.mark.parametrize(
    "text, error",
    [
        ("", AnswerError.EMPTY_ANSWER),
        ("   \n\t ", AnswerError.EMPTY_ANSWER),
        ("<think>I am still thinking", AnswerError.EMPTY_ANSWER),
        ("I recommend The Matrix.", AnswerError.MISSING_ITEM),
        ("Reason: x", AnswerError.MISSING_ITEM),
        ("Item:", AnswerError.EMPTY_ITEM),
        ("Item: **", AnswerError.EMPTY_ITEM),
        ("Item:\nReason: x", AnswerError.EMPTY_ITEM),  # the next line is a label, not the value
        ("Item: Inception", AnswerError.NOT_IN_CANDIDATES),
        ("Item: The Matrix (a great film)", AnswerError.NOT_IN_CANDIDATES),
        ("Item: Matrix", AnswerError.NOT_IN_CANDIDATES),  # no fuzzy matching
        ("Item: The Matrix Reloaded", AnswerError.NOT_IN_CANDIDATES),
        ("Item: The Matrix\nItem: Toy Story", AnswerError.MULTIPLE_ITEMS),
        ("Item: The Matrix, Toy Story", AnswerError.NOT_IN_CANDIDATES),
        ("Item: TheMatrix", AnswerError.NOT_IN_CANDIDATES),  # spaces are not punctuation
    ],
)
def test_rejected_recommendations(text, error):
    answer = rec(text)
    assert not answer.valid
    assert answer.error is error
    assert answer.problem.strip()


def test_same_item_named_twice_is_not_ambiguous():
    assert rec("Item: The Matrix\nSo, once more:\nItem: the matrix").item_index == 0


def test_unresolvable_earlier_item_lines_do_not_conflict():
    assert rec("Item: <title>\nItem: Toy Story").item_index == 1


def test_repeated_item():
    answer = rec("Item: The Matrix", already=[0])
    assert answer.error is AnswerError.REPEATED_ITEM
    assert answer.item_index == 0 and answer.item_title == "The Matrix"  # recorded, but not valid
    assert "already recommended" in answer.problem


def test_repeated_number_reference():
    assert rec("Item: 1", already=[0]).error is AnswerError.REPEATED_ITEM


def test_duplicate_titles_take_the_first_not_yet_recommended():
    assert rec("Item: Hamlet").item_index == 5
    assert rec("Item: Hamlet", already=[5]).item_index == 6
    assert rec("Item: Hamlet", already=[5, 6]).error is AnswerError.REPEATED_ITEM
    assert rec("Item: 7").item_index == 6  # a number picks exactly that duplicate


def test_problem_echo_is_short_and_single_line():
    answer = rec("Item: " + "x" * 5000 + "\nmore")
    assert answer.error is AnswerError.NOT_IN_CANDIDATES
    assert len(answer.problem) < 200 and "\n" not in answer.problem


def test_loose_matches_that_name_different_titles_are_refused():
    titles = ["Up!", "Up?", "Heat"]
    assert parse_recommendation("Item: up", titles).error is AnswerError.NOT_IN_CANDIDATES
    assert parse_recommendation("Item: UP?", titles).item_index == 1  # the exact spelling still works
    assert parse_recommendation("Item: heat.", titles).item_index == 2


def test_candidate_index_is_reusable_and_accepts_sequences():
    index = CandidateIndex(CANDIDATES)
    assert parse_recommendation("Item: Toy Story", index).item_index == 1
    assert parse_recommendation("Item: Toy Story", tuple(CANDIDATES)).item_index == 1


def test_non_string_input_is_a_programming_error():
    with pytest.raises(TypeError):
        parse_recommendation(None, CANDIDATES)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_decision(b"Decision: yes")  # type: ignore[arg-type]


def test_keys_are_symmetric_and_not_fuzzy():
    assert title_key("  **The  Matrix** ") == title_key("the matrix")
    assert loose_key("Airplane!") == loose_key("airplane")
    assert title_key("The Matrix") != title_key("Matrix")


# ---- user decisions


@pytest.mark.parametrize(
    "text, decision",
    [
        ("Reason: fits my taste\nDecision: yes", True),
        ("Reason: not for me\nDecision: no", False),
        ("decision: YES", True),
        ("**Decision:** **No**", False),
        ("- Decision: `yes`", True),
        ("Decision: Yes.", True),
        ("Decision: No, I would not pick it.", False),
        ("Decision: Definitely yes!", True),
        ("Decision: I would say no", False),
        ("Decision: accept", True),
        ("Decision: reject", False),
        ("Final decision: no", False),
        ("Reason: x Decision: no", False),  # one-line answer
        ("Decision:\n  yes", True),
        ("Decision: yes\nDecision: yes", True),
        ("<think>Decision: no?</think>Reason: x\nDecision: yes", True),
    ],
)
def test_accepted_decisions(text, decision):
    answer = parse_decision(text)
    assert answer.valid, answer
    assert answer.decision is decision
    assert answer.accepted is decision


@pytest.mark.parametrize(
    "text, error",
    [
        ("", AnswerError.EMPTY_ANSWER),
        ("Yes, I love it.", AnswerError.MISSING_DECISION),
        ("Reason: x", AnswerError.MISSING_DECISION),
        ("Decision:", AnswerError.EMPTY_DECISION),
        ("Decision: maybe", AnswerError.INVALID_DECISION),
        ("Decision: I would pick it", AnswerError.INVALID_DECISION),
        ("Decision: yes or no", AnswerError.AMBIGUOUS_DECISION),
        ("Decision: yes/no", AnswerError.AMBIGUOUS_DECISION),
        ("Decision: No | Yes", AnswerError.AMBIGUOUS_DECISION),
        ("Decision: perhaps yes, perhaps no", AnswerError.AMBIGUOUS_DECISION),
        ("Decision: yes\nDecision: no", AnswerError.AMBIGUOUS_DECISION),
    ],
)
def test_rejected_decisions(text, error):
    answer = parse_decision(text)
    assert answer.decision is None and not answer.accepted
    assert answer.error is error
    assert answer.problem


def test_decision_reason():
    assert parse_decision("Reason: I never watch\n cartoons.\nDecision: no").reason == "I never watch cartoons."
    assert parse_decision("Reason: x\nDecision: maybe").reason == "x"  # kept even when the decision is bad


def test_control_characters_and_surrogates_are_harmless():
    answer = parse_decision("Reason: a\x00b\ud800c\x1b[31m\nDecision: \x07no")
    assert answer.decision is False
    answer.reason.encode("utf-8")  # storable
    assert "\x00" not in answer.reason


@pytest.mark.parametrize(
    "value, accepted",
    [
        ("not accepted", False),
        ("I would not say yes", False),
        ("I don't accept it", False),
        ("never, yes", True),  # the negator is in another clause
        ("I do not reject it", True),
        ("No problem, accept", True),
        ("no doubt, yes", True),
        ("no way", False),
        ("Not sure, no", False),
        ("no, I do not accept", False),
        ("yes, not a problem", True),
    ],
)
def test_negation_and_idioms_in_a_decision(value, accepted):
    answer = parse_decision(f"Reason: r\nDecision: {value}")
    assert answer.valid and answer.accepted is accepted, (value, answer)


def test_a_dotted_capital_i_does_not_move_the_think_cut():
    # "İ".lower() is two characters: offsets taken from the lowered text would cut after "<think>"
    for k in (1, 5, 50):
        text = f"Reason: {'İ' * k}\n<think>\nItem: Fargo"
        assert rec(text).item_index is None
        assert rec(f"<think>{'İ' * k}</think>\nReason: ok\nItem: Toy Story").item_index == 1
        assert parse_decision(f"Reason: {'İ' * k}\n<think>\nDecision: yes").decision is None
