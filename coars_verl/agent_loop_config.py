"""The agent loop's settings (``coars.agent_loop.*``; pure, no verl), apart from the loop itself so that
the driver check reads them without importing verl."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from coars_verl.utils.config_reader import read_section

AGENT_LOOP_SECTION = "coars.agent_loop"


@dataclass(frozen=True)
class AgentLoopConfig:
    """Generation budgets of the ``coars_dialogue`` agent loop (recipe keys ``coars.agent_loop.*``)."""

    max_tokens_per_turn: int = field(default=96, metadata={"help": (
        "Most tokens one answer may have (the sampling max_tokens of each turn); a role's whole "
        "response is further bounded by rollout.response_length, and the dialogue ends when that is spent.")})

    def __post_init__(self) -> None:
        if self.max_tokens_per_turn < 1:
            raise ValueError(f"{AGENT_LOOP_SECTION}.max_tokens_per_turn: expected an integer >= 1, got {self.max_tokens_per_turn}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None) -> "AgentLoopConfig":
        """Build from ``coars.agent_loop`` (:func:`coars_verl.utils.config_reader.read_section`)."""
        return read_section(cls, mapping, AGENT_LOOP_SECTION)
