"""The CoARS agent loop: one recommender-user dialogue, returned as one training sample per role.

Registered in verl's agent-loop registry under ``coars_dialogue`` (the ``agent_name`` that
data_prep writes). Both agents are the policy being trained, talking through verl's rollout
server. The dialogue rules live in :mod:`coars_verl.dialogue.state`; this class only keeps a
token stream per role and translates:

* each role's stream: its own prompt, its generated tokens (``response_mask`` 1) and what it
  observed between its turns (the partner's words, the environment's explanations: mask 0);
* one :class:`AgentLoopOutput` per role, the user agent first and the recommender last (verl
  scores, validates and logs the final output of a run);
* identical ``extra_fields`` keys on both (verl takes the field set from the first output).

Config: ``coars.dialogue.*`` (turn rules), ``coars.prompts.*`` (templates),
``coars.agent_loop.max_tokens_per_turn`` (generation budget of one answer). The response
budget of a role is ``rollout.response_length``; the dialogue ends cleanly when it is spent.

verl's conventions, as in its own agent loops: ``run`` and each turn's generation are
``rollout_trace_op``s, so verl's rollout tracing (``rollout.trace.backend``) shows a dialogue with
both roles' turns; request ids are deterministic under ``rollout.full_determinism`` (from the
sample's ``priority`` as verl's loops derive theirs, or, in verl's V1 workers, which pass none, from
its step, row index and session: :func:`deterministic_dialogue_id`), random otherwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional
from uuid import uuid4

from omegaconf import OmegaConf
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register
from verl.utils.profiler import simple_timer
from verl.utils.rollout_trace import rollout_trace_op
from verl.workers.rollout.replica import TokenOutput

from coars_verl.agent_loop_config import AgentLoopConfig
from coars_verl.constants import (
    AGENT_LOOP_NAME,
    EXTRA_ACTED,
    EXTRA_CORE_SECONDS,
    EXTRA_PROMPT_MESSAGES,
    EXTRA_ROLE,
    EXTRA_SUMMARY,
    ROLE_RECOMMENDER,
    ROLE_USER,
    ROLES,
)
from coars_verl.dialogue.matching import tokenizer_control_markers
from coars_verl.dialogue.prompts import user_initial_messages
from coars_verl.dialogue.state import Dialogue, DialogueConfig
from coars_verl.dialogue.transcript import END_BUDGET

logger = logging.getLogger(__name__)


@dataclass
class RoleStream:
    """One agent's view of the dialogue as tokens: everything before ``response_mask`` is its prompt."""

    role: str
    request_id: str
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt_messages: list[dict[str, str]] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    response_mask: list[int] = field(default_factory=list)
    response_logprobs: Optional[list[float]] = None
    turns: int = 0

    @property
    def started(self) -> bool:
        return bool(self.token_ids)


def deterministic_dialogue_id(priority: Optional[int], sample: dict[str, Any]) -> str:
    """A dialogue's id under ``rollout.full_determinism``: the same in every run of a job, different for
    every dialogue of a step. verl's agent-loop manager passes each sample a ``priority`` unique in its
    batch, and verl's loops build ``det-<priority>`` from it; verl's V1 (TransferQueue) workers pass
    none, but every sample carries its step, its dataset row's ``index`` and its ``session_id`` (its
    place among the ``rollout.n`` samples of the row), which name it as uniquely."""
    if priority is not None:
        return f"det-{int(priority)}"
    return f"det-{sample.get('global_steps')}-{sample.get('index')}-{sample.get('session_id')}"


def role_request_ids(dialogue_id: str) -> dict[str, str]:
    """Each role's request id in the dialogue ``dialogue_id``: one per role for all its turns, because
    verl's router keeps the turns of one request id on one server, whose prefix cache holds that
    role's token stream (the turns are told apart in the trace by their role and number)."""
    return {role: f"{dialogue_id}-{role}" for role in ROLES}


def coars_section(config, name: str) -> dict:
    section = OmegaConf.select(config, f"coars.{name}", default=None)
    return OmegaConf.to_container(section, resolve=True) if section is not None else {}


class _timed:
    """Adds the time spent in a ``with`` block to ``acc["s"]``."""

    def __init__(self, acc: dict):
        self.acc = acc

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.acc["s"] += time.perf_counter() - self.start


@register(AGENT_LOOP_NAME)
class CoarsDialogueAgentLoop(AgentLoopBase):
    """verl agent loop ``coars_dialogue``: one recommender-user dialogue per run, both agents played
    by the policy, returned as two outputs (the user agent's, then the recommender's) that carry the
    dialogue summary and their role in ``extra_fields``.

    Use in your own verl project (the plugin registers it when verl is imported)::

        python -m verl.trainer.main_ppo ... actor_rollout_ref.rollout.agent.default_agent_loop=coars_dialogue \
            reward.reward_manager.name=coars_interaction algorithm.adv_estimator=coars_grpo \
            trainer.v1.trainer_mode=coars_sync +coars.dialogue.max_turns=5

    The rules of the dialogue are :class:`coars_verl.dialogue.state.Dialogue`; this class only turns
    them into token streams, budgets and masks.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dialogue_config = replace(
            DialogueConfig.from_mapping(coars_section(self.config, "dialogue"), coars_section(self.config, "prompts")),
            control_markers=tokenizer_control_markers(self.tokenizer),
        )
        self.max_tokens_per_turn = AgentLoopConfig.from_mapping(coars_section(self.config, "agent_loop")).max_tokens_per_turn
        self.response_length = int(self.rollout_config.response_length)
        self.want_logprobs = bool(self.rollout_config.calculate_log_probs)

    @rollout_trace_op
    async def run(self, sampling_params: dict[str, Any], priority: Optional[int] = None, **kwargs) -> list[AgentLoopOutput]:
        core = {"s": 0.0}  # time spent in the dialogue core, for the own-code share metric
        with _timed(core):
            dialogue = Dialogue.from_extra_info(kwargs["extra_info"], self.dialogue_config)
        dialogue_id = deterministic_dialogue_id(priority, kwargs) if getattr(self.rollout_config, "full_determinism", False) else uuid4().hex
        request_ids = role_request_ids(dialogue_id)
        streams = {role: RoleStream(role, request_id=request_ids[role]) for role in ROLES}
        metrics: dict[str, Any] = {}
        steps: dict[str, Optional[int]] = {"min_global_steps": None, "max_global_steps": None}

        while not dialogue.done:
            role = dialogue.next_role()
            stream = streams[role]
            with _timed(core):
                pending = dialogue.pending_messages(role)
            if not await self._observe(stream, pending):
                dialogue.finish_early(END_BUDGET)
                break
            budget = min(self.max_tokens_per_turn, self.response_length - len(stream.response_mask))
            if budget < 1:
                dialogue.finish_early(END_BUDGET)
                break
            with simple_timer("generate_sequences", metrics):
                text = await self._act(stream, sampling_params, budget, steps)
            with _timed(core):
                dialogue.submit(role, text)

        with _timed(core):
            summary = dialogue.transcript.summary()
        if not streams[ROLE_USER].started:
            await self._start_idle_user(streams[ROLE_USER], dialogue)
        extra = {EXTRA_SUMMARY: summary, EXTRA_CORE_SECONDS: core["s"], **steps}
        return [self._output(streams[role], extra, metrics) for role in (ROLE_USER, ROLE_RECOMMENDER)]

    async def _observe(self, stream: RoleStream, messages: list[dict[str, str]]) -> bool:
        """Append what the role has not seen yet (mask 0). False if it does not fit the budget."""
        if not messages:
            return True
        if not stream.started:
            stream.messages, stream.prompt_messages = list(messages), list(messages)
            stream.token_ids = await self.ct_build_initial_tokens(stream.messages)
            stream.response_logprobs = [] if self.want_logprobs else None
            return True
        previous = list(stream.messages)
        updated = previous + list(messages)
        merged, mask, logprobs = await self.ct_merge_context_msg(previous, updated, stream.token_ids, stream.response_mask, stream.response_logprobs)
        if len(mask) >= self.response_length:
            return False
        stream.messages, stream.token_ids, stream.response_mask = updated, merged.token_ids, mask
        if stream.response_logprobs is not None:
            stream.response_logprobs = logprobs or []
        return True

    async def _act(self, stream: RoleStream, sampling_params: dict[str, Any], max_tokens: int, steps: dict) -> str:
        """Generate one answer (mask 1) and return its text."""
        output = await self.generate_turn(stream.role, stream.turns + 1, stream.request_id, stream.token_ids,
                                          {**sampling_params, "max_tokens": max_tokens})
        if steps["min_global_steps"] is None:
            steps["min_global_steps"] = output.extra_fields.get("min_global_steps")
        steps["max_global_steps"] = output.extra_fields.get("max_global_steps", steps["max_global_steps"])
        merged, mask, logprobs = await self.ct_merge_assistant_token(
            stream.token_ids,
            output.token_ids,
            stream.response_mask,
            stream.response_logprobs,
            assistant_logprobs=output.log_probs if stream.response_logprobs is not None else None,
        )
        stream.token_ids, stream.response_mask = merged.token_ids, mask
        if stream.response_logprobs is not None:
            stream.response_logprobs = logprobs or []
        stream.turns += 1
        text = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
        stream.messages.append({"role": "assistant", "content": text})
        return text

    @rollout_trace_op
    async def generate_turn(self, role: str, turn: int, request_id: str, prompt_ids: list[int],
                            sampling_params: dict[str, Any]) -> TokenOutput:
        """One answer of ``role`` in its ``turn``-th turn (1-based): a traced op of its own, so the
        trace names the role and the turn of each generation."""
        return await self.server_manager.generate(request_id=request_id, prompt_ids=prompt_ids, sampling_params=sampling_params)

    async def _start_idle_user(self, stream: RoleStream, dialogue: Dialogue) -> None:
        """The user agent never acted (no valid recommendation): give it its context and one
        end-of-turn token that carries no loss, so the run still yields a well-formed user sample."""
        sample = dialogue.sample
        stream.messages = stream.prompt_messages = user_initial_messages(
            sample.history_titles,
            sample.candidate_titles,
            item="(no valid recommendation)",
            reason=self.dialogue_config.templates.missing_reason,
            templates=self.dialogue_config.templates,
            numbered_candidates=self.dialogue_config.numbered_candidates,
        )
        end_of_turn = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.pad_token_id
        stream.token_ids = await self.ct_build_initial_tokens(stream.messages) + [end_of_turn]
        stream.response_mask = [0]
        stream.response_logprobs = [0.0] if self.want_logprobs else None

    def _output(self, stream: RoleStream, extra: dict, metrics: dict) -> AgentLoopOutput:
        split = len(stream.token_ids) - len(stream.response_mask)
        return AgentLoopOutput(
            prompt_ids=stream.token_ids[:split],
            response_ids=stream.token_ids[split:][: self.response_length],
            response_mask=stream.response_mask[: self.response_length],
            response_logprobs=stream.response_logprobs[: self.response_length] if stream.response_logprobs is not None else None,
            num_turns=len(stream.messages),
            metrics=AgentLoopMetrics(**metrics),
            extra_fields={**extra, EXTRA_ROLE: stream.role, EXTRA_ACTED: stream.turns, EXTRA_PROMPT_MESSAGES: stream.prompt_messages},
        )
