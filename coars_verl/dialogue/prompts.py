"""Role prompts of the two agents, as overridable string templates.

Templates use ``str.format`` fields. A recipe overrides any of them under ``coars.prompts.*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping, Sequence

TEMPLATE_FIELDS: Mapping[str, frozenset[str]] = {
    "recommender_system": frozenset(),
    "recommender_task": frozenset({"history", "candidates"}),
    "user_system": frozenset(),
    "user_task": frozenset({"history", "candidates", "item", "reason"}),
    "user_next_recommendation": frozenset({"item", "reason"}),
    "user_feedback_to_recommender": frozenset({"item", "reason"}),
    "invalid_item_to_recommender": frozenset({"problem"}),
    "invalid_decision_to_user": frozenset({"problem"}),
    "missing_reason": frozenset(),
}
"""The ``str.format`` fields each template may use (a template may leave some out)."""


@dataclass(frozen=True)
class PromptTemplates:
    recommender_system: str = (
        "You are a recommender agent talking with a user. Each turn, recommend exactly one item "
        "from the candidate list that the user is most likely to pick next. Never repeat an item "
        "the user already rejected.\n"
        "Answer in exactly this format:\nReason: <one sentence>\nItem: <exact title from the candidates>"
    )
    recommender_task: str = (
        "The user has interacted with these items, oldest first:\n{history}\n\n"
        "Candidates:\n{candidates}\n\nRecommend one candidate."
    )
    user_system: str = (
        "You are a user talking with a recommender agent. Judge each recommended item by your own "
        "history. Say yes only if it is the item you would pick next from the candidate list.\n"
        "Answer in exactly this format:\nReason: <one sentence>\nDecision: yes or no"
    )
    user_task: str = (
        "Your history, oldest first:\n{history}\n\nCandidates:\n{candidates}\n\n"
        "The recommender suggests: {item}\nIts reason: {reason}\nWould you pick it?"
    )
    user_next_recommendation: str = (
        "The recommender now suggests: {item}\nIts reason: {reason}\nWould you pick it?"
    )
    user_feedback_to_recommender: str = "The user rejected {item}.\nUser's reason: {reason}\nRecommend another candidate."
    invalid_item_to_recommender: str = (
        "Your answer was not accepted: {problem} This turn is lost. "
        "Answer with 'Reason: ...' and 'Item: <exact title from the candidates>'."
    )
    invalid_decision_to_user: str = (
        "Your answer was not accepted: {problem} It counts as a rejection. "
        "Answer with 'Reason: ...' and 'Decision: yes' or 'Decision: no'."
    )
    missing_reason: str = "(no reason given)"
    """Stands in for a reason the agent did not give, wherever the partner would otherwise see nothing."""

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, str] | None) -> "PromptTemplates":
        """Build templates from a recipe's ``coars.prompts`` mapping; unknown names are an error."""
        overrides = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"coars.prompts: unknown template name(s) {unknown}; expected some of {sorted(known)}")
        return cls(**{k: str(v) for k, v in overrides.items()})


def format_item_list(titles: Sequence[str], numbered: bool = True) -> str:
    """One title per line, numbered from 1 when ``numbered``."""
    if numbered:
        return "\n".join(f"{i}. {t}" for i, t in enumerate(titles, start=1))
    return "\n".join(f"- {t}" for t in titles)


def recommender_initial_messages(
    history_titles: Sequence[str],
    candidate_titles: Sequence[str],
    templates: PromptTemplates = PromptTemplates(),
    numbered_candidates: bool = True,
) -> list[dict[str, str]]:
    """Chat messages the recommender sees before its first turn (system + task)."""
    task = templates.recommender_task.format(
        history=format_item_list(history_titles, numbered=False),
        candidates=format_item_list(candidate_titles, numbered=numbered_candidates),
    )
    return [{"role": "system", "content": templates.recommender_system}, {"role": "user", "content": task}]


def user_initial_messages(
    history_titles: Sequence[str],
    candidate_titles: Sequence[str],
    item: str,
    reason: str,
    templates: PromptTemplates = PromptTemplates(),
    numbered_candidates: bool = True,
) -> list[dict[str, str]]:
    """Chat messages the user agent sees before its first decision (system + task with the first recommendation).

    The user agent never sees the target item: nothing here takes it.
    """
    task = templates.user_task.format(
        history=format_item_list(history_titles, numbered=False),
        candidates=format_item_list(candidate_titles, numbered=numbered_candidates),
        item=item,
        reason=reason,
    )
    return [{"role": "system", "content": templates.user_system}, {"role": "user", "content": task}]


def validate_templates(templates: PromptTemplates) -> None:
    """Raise ValueError naming the template whose ``str.format`` fields cannot be filled.

    Checked once at configuration time so that a typo in a recipe override fails before any rollout,
    not in the middle of a dialogue.
    """
    for name, allowed in TEMPLATE_FIELDS.items():
        template = getattr(templates, name)
        if not isinstance(template, str):
            raise ValueError(f"coars.prompts.{name}: expected a string, got {type(template).__name__}")
        try:
            template.format(**{field: "x" for field in allowed})
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
            raise ValueError(
                f"coars.prompts.{name}: cannot fill the template ({type(err).__name__}: {err}); "
                f"allowed fields are {sorted(allowed) or 'none'} (write literal braces as '{{{{' and '}}}}')"
            ) from err


def load_prompt_overrides(path: str | Path) -> dict[str, str]:
    """A file of template overrides (``coars.prompts.*``): YAML for ``.yaml``/``.yml``, JSON otherwise.

    The one reader of such files (the evaluation's ``--prompts``, the learning task's cold start
    and benchmark); ValueError names the file when it does not hold a mapping.
    """
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        value = yaml.safe_load(text)
    else:
        value = json.loads(text)
    value = value or {}
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a mapping of prompt templates (coars.prompts.*)")
    return {str(k): str(v) for k, v in value.items()}
