"""The coupled interaction reward of CoARS (docs/method.md, step 2), as pure functions of a dialogue summary.

Both roles are scored from the SAME trajectory, with no external judge::

    r_rec  = gamma ** (k_hit - 1) * 1[target was recommended]  -  format_penalty * #invalid recommender turns
    r_user = mean over answered turns of 1[d_k == 1[i_k == target]]
             - false_accept_weight * #false accepts - false_reject_weight * #false rejects
             - format_penalty * #user format errors                     (r_user's mean is 0 with no answered turn)
    R_rec  = r_rec  + beta * hit
    R_user = r_user + beta * hit

With ``user_balance: batch`` the trainer then replaces r_user's accuracy mean by its class-balanced
form over the batch (:mod:`coars_verl.rewards.user_balance`), from the per-class counts this module
reports.

Definitions (computed once, by ``coars_verl.dialogue.transcript.Transcript``):

* ``k_hit``: the first turn whose *valid* recommendation is the target; 0 when never.
* ``hit``: Hit@1 of the dialogue, i.e. the final item (the last valid recommendation, whatever the
  user answered to it) is the target. It can differ from "the target was recommended": a falsely
  rejected target followed by another valid recommendation gives r_rec > 0 but hit = 0.
* An *answered turn* is one where the user agent acted. A turn lost to an invalid recommendation,
  or cut by ``finish_early`` before the user answered, is not answered.
* An unparsable user answer is a user format error (always penalised). How it counts for the
  accuracy mean is ``RewardConfig.unparsable_user_answer``:

  - ``"wrong"`` (default): an answered turn scored as incorrect, whatever the item; not a false
    accept/reject. A non-decision cannot be right, so garbage never earns accuracy credit even
    though most items deserve a "no".
  - ``"reject"``: an answered turn scored as a "no" (what the environment did with it), including
    a false reject when the item was the target.
  - ``"skip"``: not an answered turn (only the format penalty applies).

The input is the dict from ``Transcript.summary()`` (what the agent loop stores), read back by
``Transcript.from_summary``, so the reward manager can apply it without re-running the dialogue.
Only the turns are used; the summary's derived scalars are recomputed so that the two cannot disagree.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from coars_verl.constants import REC_REWARD_KEY, USER_REWARD_KEY
from coars_verl.dialogue.transcript import DECISION_NONE, DECISION_YES, Transcript
from coars_verl.rewards.user_balance import USER_BALANCE_MODES
from coars_verl.utils.config_reader import config_section, read_section

REWARD_SECTION = "coars.reward"
UNPARSABLE_USER_ANSWER_POLICIES = ("wrong", "reject", "skip")
REWARD_MODES = ("interaction", "outcome")


@dataclass(frozen=True)
class RewardConfig:
    """Interaction-reward weights (recipe keys ``coars.reward.*``); the method's defaults (docs/method.md, step 2)."""

    gamma: float = field(default=0.9, metadata={"help": (
        "Discount per turn before the target is recommended (1.0: no preference for an early hit).")})
    beta: float = field(default=0.5, metadata={"help": "Weight of the shared outcome (Hit@1) in both roles' rewards."})
    format_penalty: float = field(default=0.1, metadata={"help": (
        "Subtracted per invalid recommender turn (recommender) and per unparsable user answer (user).")})
    false_accept_weight: float = field(default=0.0, metadata={"help": (
        "Subtracted from the user's reward per yes to an item that is not the target.")})
    false_reject_weight: float = field(default=0.0, metadata={"help": (
        "Subtracted from the user's reward per explicit no to the target.")})
    unparsable_user_answer: str = field(default="wrong", metadata={"help": (
        'How an unparsable user answer enters the accuracy mean: "wrong", "reject" or "skip" (module docstring).')})
    mode: str = field(default="interaction", metadata={"help": (
        '"interaction": the coupled rewards above; "outcome": both roles get only Hit@1 (R = hit), the '
        "outcome-only ablation.")})
    user_balance: str = field(default="none", metadata={"help": (
        '"none": r_user as above; "batch": its accuracy term class-balanced over the training batch '
        "(targets against other items, coars_verl.rewards.user_balance), applied by the trainer.")})

    def __post_init__(self) -> None:
        for spec_field in fields(self):
            if spec_field.name in ("unparsable_user_answer", "mode", "user_balance"):
                continue
            value = getattr(self, spec_field.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"coars.reward.{spec_field.name}: expected a finite number, got {value!r}")
            object.__setattr__(self, spec_field.name, float(value))
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"coars.reward.gamma: expected a value in [0, 1], got {self.gamma}")
        for name in ("beta", "format_penalty", "false_accept_weight", "false_reject_weight"):
            # a negative weight rewards what it should cost (five invalid turns would earn +0.5)
            if getattr(self, name) < 0:
                raise ValueError(f"coars.reward.{name}: expected a value >= 0 (it is a weight or a penalty), got {getattr(self, name)}")
        if self.mode not in REWARD_MODES:
            raise ValueError(f"coars.reward.mode: expected one of {REWARD_MODES}, got {self.mode!r}")
        if self.user_balance not in USER_BALANCE_MODES:
            raise ValueError(f"coars.reward.user_balance: expected one of {USER_BALANCE_MODES}, got {self.user_balance!r}")
        if self.unparsable_user_answer not in UNPARSABLE_USER_ANSWER_POLICIES:
            raise ValueError(
                f"coars.reward.unparsable_user_answer: expected one of {UNPARSABLE_USER_ANSWER_POLICIES}, "
                f"got {self.unparsable_user_answer!r}"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None) -> "RewardConfig":
        """Build from ``coars.reward`` (:func:`coars_verl.utils.config_reader.read_section`: a typo
        must not silently use a default, a quoted number is an error)."""
        return read_section(cls, mapping, REWARD_SECTION)


def reward_config(config: Any) -> RewardConfig:
    """The reward settings of a whole run config (``coars.reward`` of verl's DictConfig or of a plain
    mapping; defaults where it is absent): the one reader, used by the reward manager, the trainer
    mode and the driver check, so all three score with the same weights."""
    return RewardConfig.from_mapping(config_section(config, REWARD_SECTION))


@dataclass(frozen=True)
class RoleRewards:
    """Both roles' rewards for one dialogue and the diagnostics they were computed from."""

    rec: float
    """R_rec = r_rec + beta * hit."""
    user: float
    """R_user = r_user + beta * hit."""
    hit: bool
    """Hit@1 of the dialogue: the final item (last valid recommendation) is the target."""
    k_hit: int
    """First turn the target was validly recommended; 0 when never."""
    target_recommended: bool
    turns: int
    valid_ratio: float
    rec_format_errors: int
    answered_turns: int
    """Turns counted in the user's accuracy mean (depends on ``unparsable_user_answer``)."""
    user_accuracy: float
    """Mean of 1[d_k == 1[i_k == target]] over answered turns; 0.0 with none."""
    false_accepts: int
    false_rejects: int
    user_format_errors: int
    target_judgments: int
    """Answered turns whose item was the target (the accuracy mean's "yes is right" class)."""
    other_judgments: int
    correct_target: int
    correct_other: int

    def as_extra_info(self) -> dict[str, float]:
        """Scalars for verl's ``reward_extra_info`` (every value a float)."""
        values = {
            REC_REWARD_KEY: self.rec,
            USER_REWARD_KEY: self.user,
            "hit": self.hit,
            "k_hit": self.k_hit,
            "turns": self.turns,
            "rec/target_recommended": self.target_recommended,
            "rec/valid_ratio": self.valid_ratio,
            "rec/format_errors": self.rec_format_errors,
            "user/answered_turns": self.answered_turns,
            "user/accuracy": self.user_accuracy,
            "user/false_accepts": self.false_accepts,
            "user/false_rejects": self.false_rejects,
            "user/format_errors": self.user_format_errors,
            "user/target_judgments": self.target_judgments,
            "user/other_judgments": self.other_judgments,
            "user/correct_target": self.correct_target,
            "user/correct_other": self.correct_other,
        }
        return {key: float(value) for key, value in values.items()}


@dataclass(frozen=True)
class _Turn:
    """The facts of one turn that the reward needs."""

    valid: bool
    is_target: bool
    decision: int
    user_error: bool


def compute_role_rewards(dialogue: "Transcript | Mapping[str, Any]", config: RewardConfig = RewardConfig()) -> RoleRewards:
    """Score both roles of a dialogue (its transcript or ``Transcript.summary()`` dict). ValueError on a malformed summary."""
    transcript = Transcript.read(dialogue)
    turns = _turns(transcript)
    rec_format_errors = sum(not turn.valid for turn in turns)
    k_hit, hit = transcript.k_hit, transcript.hit
    coupling = config.beta * float(hit)

    recommended_bonus = config.gamma ** (k_hit - 1) if k_hit > 0 else 0.0
    rec = recommended_bonus - config.format_penalty * rec_format_errors + coupling

    user = _user_score(turns, config)
    user_reward = (
        user.accuracy
        - config.false_accept_weight * user.false_accepts
        - config.false_reject_weight * user.false_rejects
        - config.format_penalty * user.format_errors
        + coupling
    )
    if config.mode == "outcome":
        rec = user_reward = float(hit)
    return RoleRewards(
        rec=rec,
        user=user_reward,
        hit=hit,
        k_hit=k_hit,
        target_recommended=k_hit > 0,
        turns=len(turns),
        valid_ratio=(len(turns) - rec_format_errors) / len(turns) if turns else 0.0,
        rec_format_errors=rec_format_errors,
        answered_turns=user.answered,
        user_accuracy=user.accuracy,
        false_accepts=user.false_accepts,
        false_rejects=user.false_rejects,
        user_format_errors=user.format_errors,
        target_judgments=user.target_judgments,
        other_judgments=user.other_judgments,
        correct_target=user.correct_target,
        correct_other=user.correct_other,
    )


@dataclass(frozen=True)
class _UserScore:
    answered: int
    accuracy: float
    false_accepts: int
    false_rejects: int
    format_errors: int
    target_judgments: int
    other_judgments: int
    correct_target: int
    correct_other: int


def _user_score(turns: list[_Turn], config: RewardConfig) -> _UserScore:
    """Accuracy of the user's decisions and its error counts, under the unparsable-answer policy."""
    answered = false_accepts = false_rejects = format_errors = 0
    judged = {True: 0, False: 0}  # answered turns by class: the item is the target / another item
    correct = {True: 0, False: 0}
    for turn in turns:
        if turn.decision == DECISION_NONE:
            continue  # the user did not act this turn
        if turn.user_error:
            format_errors += 1
            if config.unparsable_user_answer == "skip":
                continue
            if config.unparsable_user_answer == "wrong":
                answered += 1
                judged[turn.is_target] += 1
                continue
            # "reject": fall through and score it as the "no" the environment treated it as
        accepted = turn.decision == DECISION_YES
        answered += 1
        judged[turn.is_target] += 1
        correct[turn.is_target] += accepted == turn.is_target
        false_accepts += accepted and not turn.is_target
        false_rejects += (not accepted) and turn.is_target
    accuracy = (correct[True] + correct[False]) / answered if answered else 0.0
    return _UserScore(answered, accuracy, false_accepts, false_rejects, format_errors,
                      judged[True], judged[False], correct[True], correct[False])


def _turns(transcript: Transcript) -> list[_Turn]:
    """The per-turn facts the user's score needs."""
    return [_Turn(r.valid, r.valid and r.is_target, r.user_decision, bool(r.user_error)) for r in transcript.turns]
