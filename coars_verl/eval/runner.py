"""Playing the evaluation dialogues and the user-simulation questions with a generation backend.

Dialogues are the training dialogues exactly (:class:`coars_verl.dialogue.state.Dialogue`, the same
prompts, parsers and rules), run in lock-step as :mod:`coars_verl.agent_loop` runs one of them,
minus verl: each round, every unfinished dialogue contributes the prompt of whoever acts next
(each role keeps its own chat messages; the role's pending messages are appended, the chat is
rendered with the tokenizer's chat template and ``add_generation_prompt``), all prompts are
generated in one backend call, and each answer (decoded without special tokens) is appended to
the role's messages as an ``assistant`` message and submitted to the dialogue.

One difference from training, by construction: training extends each role's token stream
(verl's continuous tokens: the generated tokens are kept as they are), here the chat is
re-rendered every turn. For chat templates such as ChatML both give the same tokens whenever the
answer's text re-tokenises to the same ids and ended with the end-of-turn token.

Budgets: ``max_tokens`` per answer (``coars.agent_loop.max_tokens_per_turn`` in training);
optionally ``response_budget``, the tokens a role may accumulate after its first prompt
(``rollout.response_length`` in training); and the model's context (``max_context``). A dialogue
that runs out of budget ends with ``END_BUDGET``, like in training.

User simulation (coars_verl/eval/README.md, "What is measured"): for each item to judge, the user agent gets its role prompt as
in the dialogue (``user_system`` + ``user_task``: its history, the candidates = all the items to
judge, numbered as in the dialogue) with that item recommended and no reason (the
``missing_reason`` text), one fresh conversation per item; its answer is parsed with
``parse_decision`` (unparsable: counted as no and as a format error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

from coars_verl.agent_loop_config import AgentLoopConfig
from coars_verl.constants import ROLE_RECOMMENDER, ROLES
from coars_verl.dialogue.matching import storable_text
from coars_verl.dialogue.parsers import parse_decision
from coars_verl.dialogue.prompts import user_initial_messages
from coars_verl.dialogue.matching import tokenizer_control_markers
from coars_verl.dialogue.state import Dialogue, DialogueConfig
from coars_verl.dialogue.transcript import END_BUDGET
from coars_verl.distill.teacher_prompt import with_teacher_context
from coars_verl.eval.backends import GenerationBackend
from coars_verl.eval.data import DialogueRow, UserSimRow


class ChatCodec:
    """Chat messages -> prompt token ids (chat template, generation prompt) and ids -> text."""

    def __init__(self, tokenizer: Any, chat_template_kwargs: Optional[dict[str, Any]] = None):
        self.tokenizer = tokenizer
        self.chat_template_kwargs = dict(chat_template_kwargs or {})

    def encode(self, messages: Sequence[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=False, **self.chat_template_kwargs
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return [int(t) for t in ids]

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def control_markers(self) -> tuple[str, ...]:
        return tokenizer_control_markers(self.tokenizer)


@dataclass(frozen=True)
class GenerationLimits:
    max_tokens: int = AgentLoopConfig.max_tokens_per_turn
    """Tokens per answer."""
    response_budget: Optional[int] = None
    """Tokens a role may accumulate after its first prompt (None: unlimited)."""
    max_context: Optional[int] = None
    """Longest prompt + answer the model takes (None: unlimited)."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")


@dataclass
class _Request:
    owner: int
    role: str
    prompt: list[int]
    max_tokens: int


def generate_grouped(backend: GenerationBackend, requests: Sequence[_Request]) -> list[list[int]]:
    """All requests in one call when the backend takes a limit per prompt (``generate_each``, vLLM),
    else one call per distinct ``max_tokens`` (usually one); results in request order."""
    if hasattr(backend, "generate_each"):
        return [list(c) for c in backend.generate_each([r.prompt for r in requests], [r.max_tokens for r in requests])]
    out: list[list[int]] = [[] for _ in requests]
    for limit in sorted({r.max_tokens for r in requests}):
        chosen = [i for i, r in enumerate(requests) if r.max_tokens == limit]
        for i, completion in zip(chosen, backend.generate([requests[i].prompt for i in chosen], limit)):
            out[i] = list(completion)
    return out


def _answer_budget(limits: GenerationLimits, prompt_len: int, first_len: Optional[int]) -> int:
    """Tokens this answer may have (< 1: the dialogue is out of budget)."""
    budget = limits.max_tokens
    if limits.response_budget is not None and first_len is not None:
        budget = min(budget, limits.response_budget - (prompt_len - first_len))
    if limits.max_context is not None:
        budget = min(budget, limits.max_context - prompt_len)
    return budget


def run_dialogues(
    rows: Sequence[DialogueRow],
    backend: GenerationBackend,
    codec: ChatCodec,
    config: DialogueConfig,
    limits: GenerationLimits,
    on_round: Optional[Callable[[int], None]] = None,
    recommender_contexts: Optional[Sequence[Optional[str]]] = None,
) -> list[dict[str, Any]]:
    """Play one dialogue per row in lock-step; returns each dialogue's ``Transcript.summary()``.

    What one agent writes reaches the other with the tokenizer's control markers neutralised, as in training.
    ``recommender_contexts`` (one text or None per row; the Reflexion-style baseline's memory) is
    appended to the recommender's system message, where the teacher's context goes."""
    config = replace(config, control_markers=config.control_markers or codec.control_markers())
    dialogues = [Dialogue.from_extra_info(row.extra_info, config) for row in rows]
    messages: list[dict[str, list[dict[str, str]]]] = [{role: [] for role in ROLES} for _ in rows]
    first_len: list[dict[str, int]] = [{} for _ in rows]
    while True:
        requests: list[_Request] = []
        for i, dialogue in enumerate(dialogues):
            if dialogue.done:
                continue
            role = dialogue.next_role()
            pending = dialogue.pending_messages(role)
            if role == ROLE_RECOMMENDER and not messages[i][role] and recommender_contexts and recommender_contexts[i]:
                pending = with_teacher_context(pending, recommender_contexts[i], "system")
            messages[i][role].extend(pending)
            prompt = codec.encode(messages[i][role])
            first_len[i].setdefault(role, len(prompt))
            budget = _answer_budget(limits, len(prompt), first_len[i][role])
            if budget < 1:
                dialogue.finish_early(END_BUDGET)
                continue
            requests.append(_Request(i, role, prompt, budget))
        if not requests:
            break
        for request, completion in zip(requests, generate_grouped(backend, requests)):
            text = codec.decode(completion)
            messages[request.owner][request.role].append({"role": "assistant", "content": text})
            dialogues[request.owner].submit(request.role, text)
        if on_round is not None:
            on_round(len(requests))
    return [dialogue.transcript.summary() for dialogue in dialogues]


def user_sim_messages(row: UserSimRow, item_title: str, config: DialogueConfig) -> list[dict[str, str]]:
    """The user agent's question about one item of ``row`` (see :func:`user_sim_question`)."""
    return user_sim_question(row.history_titles, row.item_titles, item_title, config)


def user_sim_question(
    history_titles: Sequence[str], judged_titles: Sequence[str], item_title: str, config: DialogueConfig
) -> list[dict[str, str]]:
    """The user agent's question about one item: its dialogue role prompt (the judged items as the
    candidates) with the item recommended and no reason."""
    return user_initial_messages(
        history_titles,
        judged_titles,
        item=item_title,
        reason=config.templates.missing_reason,
        templates=config.templates,
        numbered_candidates=config.numbered_candidates,
    )


def run_user_sim(
    rows: Sequence[UserSimRow],
    backend: GenerationBackend,
    codec: ChatCodec,
    config: DialogueConfig,
    limits: GenerationLimits,
) -> list[dict[str, Any]]:
    """Ask every item of every row; one record per row with the decisions (1 yes, 0 no, None unparsable)."""
    requests: list[_Request] = []
    slots: list[tuple[int, int]] = []
    skipped: dict[tuple[int, int], str] = {}
    for r, row in enumerate(rows):
        for j, title in enumerate(row.item_titles):
            prompt = codec.encode(user_sim_messages(row, title, config))
            budget = _answer_budget(limits, len(prompt), None)
            if budget < 1:
                skipped[(r, j)] = "prompt_too_long"
                continue
            requests.append(_Request(len(slots), "user", prompt, budget))
            slots.append((r, j))
    completions = generate_grouped(backend, requests)
    texts = {slots[req.owner]: codec.decode(ids) for req, ids in zip(requests, completions)}
    records = []
    for r, row in enumerate(rows):
        decisions: list[Optional[int]] = []
        errors: list[str] = []
        raws: list[str] = []
        for j in range(len(row.item_titles)):
            if (r, j) in skipped:
                decisions.append(None)
                errors.append(skipped[(r, j)])
                raws.append("")
                continue
            text = texts[(r, j)]
            answer = parse_decision(text, max_reason_chars=config.max_reason_chars)
            decisions.append(None if answer.decision is None else int(bool(answer.decision)))
            errors.append(answer.error.value if answer.error is not None else "")
            raws.append(storable_text(text))
        records.append(
            {
                "key": row.key,
                "user_id": row.user_id,
                "item_ids": list(row.item_ids),
                "labels": [int(x) for x in row.labels],
                "decisions": decisions,
                "errors": errors,
                "raw": raws,
            }
        )
    return records
