"""The settings of self-distilled credit assignment (``algorithm.coars.self_distill.*``; pure, no torch, no verl).

Read by the estimator, the trainer and the driver check; the advantage math
(:mod:`coars_verl.algo.advantage`) takes them as plain arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

from coars_verl.distill.contexts import DEFAULT_MAX_CHARS, DEFAULT_SOURCES, teacher_source_names
from coars_verl.distill.teacher_prompt import CONTEXT_POSITIONS
from coars_verl.utils.config_reader import read_section

MODE_RLSD = "rlsd"
MODE_ADDITIVE = "additive"
MODE_OFF = "off"
MODES = (MODE_RLSD, MODE_ADDITIVE, MODE_OFF)

TEACHER_POLICY = "policy"
TEACHER_REFERENCE = "reference"
TEACHERS = (TEACHER_POLICY, TEACHER_REFERENCE)


def lambda_schedule(step: int, lam0: float = 0.5, decay_steps: int = 100) -> float:
    """``lambda(step) = lam0 * clamp(1 - step / decay_steps, 0, 1)``: linear decay to 0.

    ``step`` counts completed updates (0 for the first one; in verl pass ``global_steps - 1``).
    ``decay_steps <= 0`` keeps ``lam0`` constant. Negative steps give ``lam0``; steps at or past
    ``decay_steps`` give exactly 0.0.
    """
    if not 0.0 <= lam0 <= 1.0:
        raise ValueError(f"lam0 must be in [0, 1], got {lam0}")
    if decay_steps <= 0:
        return float(lam0)
    frac = min(max(step / decay_steps, 0.0), 1.0)
    return float(lam0) * (1.0 - frac)


@dataclass(frozen=True)
class SelfDistillConfig:
    """Switches of the self-distilled credit assignment (docs/method.md, "Self-distilled credit assignment"; recipe keys
    ``algorithm.coars.self_distill.*``). Defaults: the method's, where the paper's design gives one; the others are
    this project's choices (their help starts with *)."""

    mode: str = field(default=MODE_RLSD, metadata={"help": (
        '"rlsd" | "additive" | "off" (outcome-only per-role GRPO, the ablation).')})
    lam0: float = field(default=0.5, metadata={"help": "rlsd mixing weight lambda at step 0."})
    lambda_decay_fraction: Optional[float] = field(default=0.5, metadata={"help": (
        "* rlsd: lambda decays linearly to 0 over this share of the run's training steps (resolved by the "
        "trainer once verl has counted the run: for_run): the teacher's token credit shapes the early updates, "
        "when outcome advantages are noisiest, and the rest is per-role GRPO with no teacher pass. A share, not "
        "a step count, so a long GPU run and a short CPU run get the same shape. null: lambda_decay_steps.")})
    lambda_decay_steps: int = field(default=100, metadata={"help": (
        "* with lambda_decay_fraction null only: steps over which lambda decays linearly to 0 (<= 0: constant).")})
    eps_w: float = field(default=0.2, metadata={"help": "rlsd clip half-width of the token weight."})
    eta: float = field(default=0.1, metadata={"help": (
        "* additive weight of the clipped delta (with clip 1 the teacher moves a token's advantage by at most "
        "0.1, about the rlsd range lam0 * eps_w * |A| for |A| ~ 1).")})
    clip: float = field(default=1.0, metadata={"help": "* additive clip bound c of delta, in nats."})
    teacher: str = field(default=TEACHER_POLICY, metadata={"help": (
        '"policy" (the current weights) | "reference" (the frozen reference model; without LoRA it needs '
        "actor_rollout_ref.actor.use_kl_loss=true).")})
    sources: tuple[str, ...] = field(default=DEFAULT_SOURCES, metadata={"help": (
        "Teacher-context sources, tried in this order; also target (leaks the answer, an ablation only) and "
        "neighbor (other users with overlapping histories).")})
    memory_per_user: int = field(default=4, metadata={"help": "* records kept per user in the dialogue memory."})
    memory_max_users: int = field(default=50_000, metadata={"help": (
        "* users kept in the memory; the least recently added are dropped first.")})
    memory_k: int = field(default=2, metadata={"help": (
        "* past dialogues shown by the memory source (other users, for the neighbor source).")})
    context_max_chars: int = field(default=DEFAULT_MAX_CHARS, metadata={"help": "* character budget of a teacher context."})
    context_position: str = field(default="system", metadata={"help": (
        '* where the context goes in the teacher\'s prompt: appended to the system message ("system") or '
        'before the first user message ("user").')})
    memory_key: Optional[str] = field(default=None, metadata={"help": (
        "Single-turn tasks only: the extra_info key whose value groups samples into one memory (e.g. user_id); "
        "null: single-turn samples have no memory. Dialogues use their user id.")})

    def __post_init__(self) -> None:
        sources = (self.sources,) if isinstance(self.sources, str) else tuple(self.sources)
        object.__setattr__(self, "sources", sources)
        if self.mode not in MODES:
            raise ValueError(f"self_distill.mode: unknown {self.mode!r}; expected one of {MODES}")
        if self.context_position not in CONTEXT_POSITIONS:
            raise ValueError(
                f"self_distill.context_position: unknown {self.context_position!r}; expected one of {CONTEXT_POSITIONS}"
            )
        if self.teacher not in TEACHERS:
            raise ValueError(f"self_distill.teacher: unknown {self.teacher!r}; expected one of {TEACHERS}")
        registered = teacher_source_names()
        unknown = [s for s in sources if s not in registered]
        if unknown:
            raise ValueError(f"self_distill.sources: unknown {unknown}; registered teacher sources: {list(registered)}")
        if len(set(sources)) != len(sources):
            raise ValueError(f"self_distill.sources: duplicates in {list(sources)}")
        if not 0.0 <= self.lam0 <= 1.0:
            raise ValueError(f"self_distill.lam0 must be in [0, 1], got {self.lam0}")
        if not 0.0 <= self.eps_w < 1.0:
            raise ValueError(f"self_distill.eps_w must be in [0, 1), got {self.eps_w}")
        if not self.clip >= 0.0:
            raise ValueError(f"self_distill.clip must be >= 0, got {self.clip}")
        for name in ("memory_per_user", "memory_max_users", "context_max_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"self_distill.{name} must be >= 1, got {getattr(self, name)}")
        if self.memory_k < 0:
            raise ValueError(f"self_distill.memory_k must be >= 0, got {self.memory_k}")
        if self.lambda_decay_fraction is not None and not 0.0 < self.lambda_decay_fraction <= 1.0:
            raise ValueError(f"self_distill.lambda_decay_fraction must be in (0, 1] or null, got {self.lambda_decay_fraction}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> "SelfDistillConfig":
        """Build from ``algorithm.coars.self_distill`` (:func:`coars_verl.utils.config_reader.read_section`:
        unknown keys and wrongly typed values are errors; ``sources`` may be a comma-separated string)."""
        return read_section(cls, mapping, "algorithm.coars.self_distill")

    def lam_at(self, step: int) -> float:
        """rlsd lambda at ``step`` (:func:`lambda_schedule` with this config).

        A decay given as a share of the run has no lambda until the run's length is known: call
        :meth:`for_run` first (ValueError otherwise, rather than a schedule of some other length)."""
        if self.lambda_decay_fraction is not None:
            raise ValueError(
                "self_distill.lambda_decay_fraction is a share of the run's training steps: resolve it with "
                "SelfDistillConfig.for_run(total_steps) once the run's length is known"
            )
        return lambda_schedule(step, self.lam0, self.lambda_decay_steps)

    def for_run(self, total_steps: int) -> "SelfDistillConfig":
        """This config with ``lambda_decay_fraction`` turned into ``lambda_decay_steps`` of a run of
        ``total_steps`` (the fraction is then None: resolving twice changes nothing)."""
        if self.lambda_decay_fraction is None:
            return self
        if total_steps < 1:
            raise ValueError(f"self_distill.lambda_decay_fraction: the run has {total_steps} training steps; expected at least 1")
        decay_steps = max(1, math.ceil(self.lambda_decay_fraction * total_steps))
        return replace(self, lambda_decay_steps=decay_steps, lambda_decay_fraction=None)
