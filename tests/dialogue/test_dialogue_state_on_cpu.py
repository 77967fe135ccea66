"""The dialogue state machine on hand-written dialogues: turn order, messages, transcript, end reasons."""

import json

import pytest

from coars_verl.constants import (
    EI_CANDIDATE_ITEM_IDS, EI_CANDIDATE_TITLES, EI_HISTORY_TITLES, EI_TARGET_ITEM_ID,
    EI_TARGET_TITLE, EI_USER_ID, ROLE_RECOMMENDER, ROLE_USER,
)
from coars_verl.dialogue.prompts import PromptTemplates
from coars_verl.dialogue.state import (
    Dialogue,
    DialogueConfig,
    DialogueProtocolError,
    DialogueSample,
    TurnOutcome,
)
from coars_verl.dialogue.transcript import (
    DECISION_NO,
    DECISION_NONE,
    DECISION_YES,
    END_ACCEPTED,
    END_BUDGET,
    END_MAX_TURNS,
    Transcript,
)

EXTRA_INFO = {
    EI_USER_ID: 42,
    EI_HISTORY_TITLES: ["Alien", "Aliens"],
    EI_CANDIDATE_TITLES: ["The Matrix", "Toy Story", "Heat", "Up"],
    EI_CANDIDATE_ITEM_IDS: [10, 11, 12, 13],
    EI_TARGET_TITLE: "Heat",
    EI_TARGET_ITEM_ID: 12,
}


def make(max_turns=5, **config):
    return Dialogue(DialogueSample.from_extra_info(EXTRA_INFO), DialogueConfig(max_turns=max_turns, **config))


def rec(item, reason="r"):
    return f"Reason: {reason}\nItem: {item}"


def user(decision, reason="u"):
    return f"Reason: {reason}\nDecision: {decision}"


# ---- DialogueSample


def test_sample_from_extra_info_converts_ids_to_strings():
    sample = DialogueSample.from_extra_info(EXTRA_INFO)
    assert sample.user_id == "42"
    assert sample.candidate_item_ids == ("10", "11", "12", "13")
    assert sample.history_titles == ("Alien", "Aliens")
    assert sample.is_target(2) and not sample.is_target(0)


def test_sample_target_matches_by_title_case_insensitively_without_ids():
    info = dict(EXTRA_INFO, **{EI_TARGET_TITLE: "  heat ", EI_CANDIDATE_ITEM_IDS: None, EI_TARGET_ITEM_ID: None})
    sample = DialogueSample.from_extra_info(info)
    assert sample.candidate_item_ids == () and sample.item_id(2) == ""
    assert sample.is_target(2)


def test_sample_target_matches_by_id_when_titles_differ():
    info = dict(EXTRA_INFO, **{EI_TARGET_TITLE: "Heat (1995)"})
    assert DialogueSample.from_extra_info(info).is_target(2)


@pytest.mark.parametrize(
    "change, field",
    [
        ({EI_CANDIDATE_TITLES: None}, EI_CANDIDATE_TITLES),
        ({EI_CANDIDATE_TITLES: []}, EI_CANDIDATE_TITLES),
        ({EI_CANDIDATE_TITLES: "The Matrix"}, EI_CANDIDATE_TITLES),
        ({EI_CANDIDATE_TITLES: ["The Matrix", None, "Heat", "Up"]}, "candidate_titles"),
        ({EI_CANDIDATE_TITLES: ["The Matrix", " ", "Heat", "Up"]}, "candidate_titles"),
        ({EI_HISTORY_TITLES: None}, EI_HISTORY_TITLES),
        ({EI_HISTORY_TITLES: [1, 2]}, EI_HISTORY_TITLES),
        ({EI_CANDIDATE_ITEM_IDS: [1, 2]}, EI_CANDIDATE_ITEM_IDS),
        ({EI_CANDIDATE_ITEM_IDS: [1.5, 2, 3, 4]}, EI_CANDIDATE_ITEM_IDS),
        ({EI_TARGET_TITLE: None}, EI_TARGET_TITLE),
        ({EI_TARGET_TITLE: 3}, EI_TARGET_TITLE),
        ({EI_TARGET_TITLE: "Jaws", EI_TARGET_ITEM_ID: 99}, EI_TARGET_TITLE),
    ],
)
def test_sample_from_extra_info_names_the_bad_field(change, field):
    info = {k: v for k, v in {**EXTRA_INFO, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=field):
        DialogueSample.from_extra_info(info)


def test_sample_rejects_non_mapping():
    with pytest.raises(ValueError, match="mapping"):
        DialogueSample.from_extra_info(["not", "a", "mapping"])  # type: ignore[arg-type]


# ---- DialogueConfig


def test_config_from_mapping():
    config = DialogueConfig.from_mapping(
        {"max_turns": 3, "numbered_candidates": False}, prompts={"missing_reason": "-"}
    )
    assert config.max_turns == 3 and not config.numbered_candidates
    assert config.templates.missing_reason == "-"
    assert DialogueConfig.from_mapping(None) == DialogueConfig()


def test_config_unknown_keys_are_named():
    with pytest.raises(ValueError, match="max_turn"):
        DialogueConfig.from_mapping({"max_turn": 3})
    with pytest.raises(ValueError, match="bogus"):
        DialogueConfig.from_mapping({}, prompts={"bogus": "x"})


@pytest.mark.parametrize(
    "bad",
    [{"max_turns": 0}, {"max_turns": True}, {"max_turns": "5"}, {"numbered_candidates": 1}, {"max_reason_chars": 0}],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        DialogueConfig(**bad)


def test_config_rejects_templates_with_unknown_fields():
    with pytest.raises(ValueError, match="user_feedback_to_recommender"):
        DialogueConfig(templates=PromptTemplates(user_feedback_to_recommender="{item} {decision}"))


# ---- the happy paths


def test_hit_at_turn_one():
    d = make()
    assert d.next_role() == ROLE_RECOMMENDER and d.turn == 1 and not d.done
    event = d.submit(ROLE_RECOMMENDER, rec("Heat", "you like heists"))
    assert event.outcome is TurnOutcome.RECOMMENDED and event.item_title == "Heat" and not event.done
    assert d.next_role() == ROLE_USER
    event = d.submit(ROLE_USER, user("yes", "love heists"))
    assert event.outcome is TurnOutcome.ACCEPTED and event.done and event.end_reason == END_ACCEPTED
    assert d.next_role() is None and d.done and d.turn == 1
    t = d.transcript
    assert t.hit and t.k_hit == 1 and t.num_turns == 1 and t.end_reason == END_ACCEPTED
    record = t.turns[0]
    assert (record.rec_item_index, record.rec_item_id, record.rec_reason) == (2, "12", "you like heists")
    assert (record.user_decision, record.user_reason, record.is_target) == (DECISION_YES, "love heists", True)


def test_rejections_then_hit_at_turn_three():
    d = make()
    d.submit(ROLE_RECOMMENDER, rec("The Matrix"))
    d.submit(ROLE_USER, user("no", "too sci-fi"))
    assert d.turn == 2 and d.next_role() == ROLE_RECOMMENDER
    d.submit(ROLE_RECOMMENDER, rec("Toy Story"))
    d.submit(ROLE_USER, user("no", "too childish"))
    d.submit(ROLE_RECOMMENDER, rec("Heat"))
    d.submit(ROLE_USER, user("yes"))
    summary = d.transcript.summary()
    assert summary["turns"] == 3 and summary["hit"] and summary["k_hit"] == 3
    assert summary["user_decisions"] == [DECISION_NO, DECISION_NO, DECISION_YES]
    assert summary["rec_item_ids"] == ["10", "11", "12"]
    rejected = Transcript.from_summary(summary).rejected_turns
    assert [r.rec_item_title for r in rejected] == ["The Matrix", "Toy Story"]
    assert [r.user_reason for r in rejected] == ["too sci-fi", "too childish"]
    assert not {"compact_text", "rejected_titles", "rejected_reasons"} & set(summary)  # nothing reads them: not stored
    assert summary["false_accepts"] == 0 and summary["false_rejects"] == 0


def test_max_turns_ends_the_dialogue_and_final_item_is_the_last_valid_one():
    d = make(max_turns=2)
    d.submit(ROLE_RECOMMENDER, rec("Heat"))
    d.submit(ROLE_USER, user("no"))  # a false reject of the target
    d.submit(ROLE_RECOMMENDER, rec("Up"))
    event = d.submit(ROLE_USER, user("no"))
    assert event.done and event.end_reason == END_MAX_TURNS and d.turn == 2
    t = d.transcript
    assert t.final_turn.rec_item_title == "Up"
    assert not t.hit and t.k_hit == 1
    assert t.summary()["false_rejects"] == 1


def test_false_accept_ends_without_hit():
    d = make()
    d.submit(ROLE_RECOMMENDER, rec("Up"))
    d.submit(ROLE_USER, user("yes"))
    summary = d.transcript.summary()
    assert summary["end_reason"] == END_ACCEPTED and not summary["hit"] and summary["false_accepts"] == 1
    assert summary["final_item_title"] == "Up" and summary["final_item_id"] == "13"


# ---- invalid answers


def test_invalid_recommendation_loses_the_turn_and_is_explained():
    d = make()
    d.pending_messages(ROLE_RECOMMENDER)
    event = d.submit(ROLE_RECOMMENDER, "I think Jaws.\nItem: Jaws")
    assert event.outcome is TurnOutcome.INVALID_RECOMMENDATION and not event.valid
    assert "'Jaws' is not one of the candidates" in event.problem
    assert d.next_role() == ROLE_RECOMMENDER and d.turn == 2  # the user agent does not act
    assert d.pending_messages(ROLE_USER) == []
    (message,) = d.pending_messages(ROLE_RECOMMENDER)
    assert message["role"] == "user"
    assert message["content"].startswith("Your answer was not accepted: 'Jaws' is not one of the candidates")
    assert "This turn is lost" in message["content"]
    record = d.transcript.turns[0]
    assert not record.valid and record.rec_error == "not_in_candidates" and record.user_decision == DECISION_NONE


def test_repeated_recommendation_is_invalid():
    d = make()
    d.submit(ROLE_RECOMMENDER, rec("Up"))
    d.submit(ROLE_USER, user("no"))
    event = d.submit(ROLE_RECOMMENDER, rec("up"))
    assert event.outcome is TurnOutcome.INVALID_RECOMMENDATION and "already recommended" in event.problem
    assert d.transcript.turns[1].rec_error == "repeated_item"


def test_only_invalid_answers_reach_max_turns_with_no_final_item():
    d = make(max_turns=3)
    for _ in range(3):
        d.submit(ROLE_RECOMMENDER, "no idea")
    assert d.done and d.transcript.end_reason == END_MAX_TURNS and d.turn == 3
    summary = d.transcript.summary()
    assert summary["valid_ratio"] == 0.0 and summary["rec_format_errors"] == 3
    assert summary["final_turn"] == 0 and summary["final_item_title"] == "" and not summary["hit"]
    assert summary["user_decisions"] == [DECISION_NONE] * 3


def test_unparsable_user_answer_counts_as_rejection_and_is_explained_next_time():
    d = make()
    d.pending_messages(ROLE_RECOMMENDER)
    d.submit(ROLE_RECOMMENDER, rec("Up"))
    d.pending_messages(ROLE_USER)
    event = d.submit(ROLE_USER, "Reason: cute film\nhmm, not sure")
    assert event.outcome is TurnOutcome.UNPARSABLE_DECISION and not event.done
    assert "Decision:" in event.problem
    (to_rec,) = d.pending_messages(ROLE_RECOMMENDER)
    # The reason runs from "Reason:" to the next label or the end of the answer.
    expected = "The user rejected Up.\nUser's reason: cute film hmm, not sure\nRecommend another candidate."
    assert to_rec["content"] == expected
    d.submit(ROLE_RECOMMENDER, rec("Heat", "heists"))
    (to_user,) = d.pending_messages(ROLE_USER)
    assert to_user["role"] == "user"
    assert to_user["content"].startswith("Your answer was not accepted: There is no 'Decision:' line")
    assert "The recommender now suggests: Heat\nIts reason: heists" in to_user["content"]
    record = d.transcript.turns[0]
    assert record.user_decision == DECISION_NO and record.user_error == "missing_decision"
    assert d.transcript.summary()["user_format_errors"] == 1


def test_missing_reasons_are_replaced_for_the_partner():
    d = make()
    d.pending_messages(ROLE_RECOMMENDER)
    d.submit(ROLE_RECOMMENDER, "Item: Up")
    user_messages = d.pending_messages(ROLE_USER)
    assert "Its reason: (no reason given)" in user_messages[-1]["content"]
    d.submit(ROLE_USER, "Decision: no")
    assert "User's reason: (no reason given)" in d.pending_messages(ROLE_RECOMMENDER)[0]["content"]


# ---- messages


def test_pending_messages_are_delivered_once_and_alternate():
    d = make()
    first = d.pending_messages(ROLE_RECOMMENDER)
    assert [m["role"] for m in first] == ["system", "user"]
    assert "1. The Matrix" in first[1]["content"] and "- Alien" in first[1]["content"]
    assert d.pending_messages(ROLE_RECOMMENDER) == []
    assert d.pending_messages(ROLE_USER) == []  # the user agent starts with the first valid recommendation
    d.submit(ROLE_RECOMMENDER, rec("Up", "light fun"))
    user_first = d.pending_messages(ROLE_USER)
    assert [m["role"] for m in user_first] == ["system", "user"]
    assert "The recommender suggests: Up\nIts reason: light fun" in user_first[1]["content"]
    assert "Heat" in user_first[1]["content"]  # as a candidate ...
    d.submit(ROLE_USER, user("no", "too light"))
    (feedback,) = d.pending_messages(ROLE_RECOMMENDER)
    expected = "The user rejected Up.\nUser's reason: too light\nRecommend another candidate."
    assert feedback == {"role": "user", "content": expected}


def test_user_never_sees_the_target_as_such():
    info = dict(EXTRA_INFO, **{EI_TARGET_TITLE: "Heat", EI_TARGET_ITEM_ID: 12})
    d = Dialogue.from_extra_info(info)
    d.submit(ROLE_RECOMMENDER, rec("Up"))
    text = json.dumps(d.pending_messages(ROLE_USER))
    assert "target" not in text.lower() and '"12"' not in text


def test_unnumbered_candidates():
    d = make(numbered_candidates=False)
    assert "- The Matrix" in d.pending_messages(ROLE_RECOMMENDER)[1]["content"]
    assert d.submit(ROLE_RECOMMENDER, "Item: 1").outcome is TurnOutcome.INVALID_RECOMMENDATION


def test_messages_after_a_lost_final_turn_are_not_queued():
    d = make(max_turns=1)
    d.pending_messages(ROLE_RECOMMENDER)
    d.submit(ROLE_RECOMMENDER, "garbage")
    assert d.done and d.pending_messages(ROLE_RECOMMENDER) == []


# ---- protocol errors and early finish


def test_wrong_role_and_finished_dialogue_raise():
    d = make()
    with pytest.raises(DialogueProtocolError):
        d.submit(ROLE_USER, user("yes"))
    with pytest.raises(ValueError):
        d.submit("critic", "x")
    with pytest.raises(ValueError):
        d.pending_messages("critic")
    with pytest.raises(TypeError):
        d.submit(ROLE_RECOMMENDER, None)  # type: ignore[arg-type]
    d.submit(ROLE_RECOMMENDER, rec("Heat"))
    d.submit(ROLE_USER, user("yes"))
    with pytest.raises(DialogueProtocolError):
        d.submit(ROLE_RECOMMENDER, rec("Up"))


def test_finish_early_mid_turn_keeps_the_unanswered_recommendation():
    d = make()
    d.submit(ROLE_RECOMMENDER, rec("Heat"))
    d.finish_early(END_BUDGET)
    assert d.done and d.next_role() is None and d.turn == 1
    t = d.transcript
    assert t.end_reason == END_BUDGET and t.turns[0].user_decision == DECISION_NONE
    assert t.hit  # the final item is the last valid recommendation, answered or not
    d.finish_early("something else")  # no-op once over
    assert d.transcript.end_reason == END_BUDGET


def test_finish_early_before_any_turn():
    d = make()
    d.finish_early("budget")
    assert d.done and d.turn == 0 and d.transcript.num_turns == 0
    summary = d.transcript.summary()
    assert summary["turns"] == 0 and summary["valid_ratio"] == 0.0 and summary["k_hit"] == 0
    with pytest.raises(ValueError):
        make().finish_early("  ")


# ---- transcript


def test_summary_is_json_serialisable_and_round_trips():
    d = make()
    d.submit(ROLE_RECOMMENDER, rec("Up", "a\x00b\ud800"))
    d.submit(ROLE_USER, "Decision: maybe")
    d.submit(ROLE_RECOMMENDER, "Item: Jaws")
    d.submit(ROLE_RECOMMENDER, rec("Heat"))
    d.submit(ROLE_USER, user("yes"))
    summary = d.transcript.summary()
    encoded = json.dumps(summary, ensure_ascii=False).encode("utf-8")  # no lone surrogates left
    assert Transcript.from_summary(json.loads(encoded)) == d.transcript
    for value in summary.values():
        assert isinstance(value, (str, int, float, bool, list))
        if isinstance(value, list):
            assert all(isinstance(v, (str, int, float, bool)) for v in value)
    lean = d.transcript.summary(include_raw=False)
    assert "rec_raw" not in lean
    assert Transcript.from_summary(lean).turns[0].rec_raw == ""


def test_summary_fields_of_a_mixed_dialogue():
    d = make()
    d.submit(ROLE_RECOMMENDER, rec("Up"))
    d.submit(ROLE_USER, "Decision: maybe")
    d.submit(ROLE_RECOMMENDER, "Item: Jaws")
    d.submit(ROLE_RECOMMENDER, rec("Heat"))
    d.submit(ROLE_USER, user("yes"))
    s = d.transcript.summary()
    assert s["turns"] == 3 and s["k_hit"] == 3 and s["hit"] and s["final_turn"] == 3
    assert s["rec_valid"] == [True, False, True]
    assert s["valid_ratio"] == pytest.approx(2 / 3)
    assert s["user_decisions"] == [DECISION_NO, DECISION_NONE, DECISION_YES]
    assert s["user_errors"] == ["invalid_decision", "", ""]
    assert s["rec_errors"] == ["", "not_in_candidates", ""]
    assert s["user_answered_turns"] == 2 and s["user_format_errors"] == 1 and s["rec_format_errors"] == 1
    turns = Transcript.from_summary(s).turns
    assert [r.answer for r in turns] == [None, None, "yes"]  # unparsable, not asked, yes
    assert [r.rec_item_title if r.valid else None for r in turns] == ["Up", None, "Heat"]


def test_from_summary_rejects_inconsistent_lists():
    summary = make().transcript.summary()
    summary["turns"] = 1
    with pytest.raises(ValueError, match="rec_valid"):
        Transcript.from_summary(summary)


def test_sample_from_parquet_like_numpy_arrays():
    np = pytest.importorskip("numpy")
    info = {
        EI_USER_ID: "7",
        EI_HISTORY_TITLES: np.array(["Alien"], dtype=object),
        EI_CANDIDATE_TITLES: np.array(["The Matrix", "Heat"]),
        EI_CANDIDATE_ITEM_IDS: np.array([3, 4], dtype=np.int64),
        EI_TARGET_TITLE: np.str_("Heat"),
        EI_TARGET_ITEM_ID: np.int64(4),
    }
    sample = DialogueSample.from_extra_info(info)
    assert sample.candidate_titles == ("The Matrix", "Heat") and sample.candidate_item_ids == ("3", "4")
    assert sample.target_item_id == "4" and sample.is_target(1)
