"""Which CoARS components a verl config selects, and why a combination of them cannot work.

Our components read settings that verl ignores (``coars.*``, ``algorithm.coars.*``) and rely on
each other in ways verl cannot see: with verl's own trainer the dialogue's two samples would both
train on the recommender's reward, and a self-distillation setting without our estimator would be
dropped without a word. :func:`composition_problems` names every such problem from the composed
config alone; the plugin runs it in the driver before Ray starts (:mod:`coars_verl.plugin`), and
``python -m coars_verl.doctor --config-name ...`` runs it on a recipe.

Pure: no verl import. The config is an OmegaConf ``DictConfig`` or a plain mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from coars_verl.constants import ADV_ESTIMATOR_NAME, AGENT_LOOP_NAME, REWARD_MANAGER_NAME, TRAINER_MODE_NAME

COARS_SECTIONS = ("dialogue", "agent_loop", "reward", "prompts", "dump")
"""What may stand under ``coars``: read by the agent loop (dialogue, agent_loop, prompts), the reward manager (reward) and the
trainer's credit dump (dump, :mod:`coars_verl.credit_dump`)."""
ALGORITHM_COARS_SECTIONS = ("self_distill",)

class CompositionError(ValueError):
    """A config that combines CoARS components in a way that cannot train correctly."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("coars_verl: this config cannot train correctly:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Selection:
    """The CoARS components a config selects."""

    agent_loop: bool
    """``coars_dialogue`` is the default agent loop or named in a local data file's ``agent_name`` column."""
    reward_manager: bool
    estimator: bool
    trainer_mode: bool
    agent_loop_known: bool = True
    """False when some data file could not be read, so the ``agent_name`` column is unknown."""


def _get(config: Any, path: str, default: Any = None) -> Any:
    node = config if isinstance(config, DictConfig) else OmegaConf.create(dict(config))
    return OmegaConf.select(node, path, default=default)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def data_agent_names(files: Iterable[str]) -> tuple[set[str], bool]:
    """(agent names in the ``agent_name`` column of the local parquet files, whether every file was read)."""
    import pyarrow.parquet as pq

    names: set[str] = set()
    complete = True
    for file in files:
        path = Path(file).expanduser()
        if not path.is_file() or path.suffix != ".parquet":
            complete = False  # remote or not yet there: verl reads it later
            continue
        schema = pq.read_schema(path)
        if "agent_name" in schema.names:
            names.update(str(v) for v in pq.read_table(path, columns=["agent_name"]).column("agent_name").unique().to_pylist())
    return names, complete


def selection(config: Any) -> Selection:
    default_loop = _get(config, "actor_rollout_ref.rollout.agent.default_agent_loop")
    names, complete = data_agent_names(_as_list(_get(config, "data.train_files")) + _as_list(_get(config, "data.val_files")))
    return Selection(
        agent_loop=default_loop == AGENT_LOOP_NAME or AGENT_LOOP_NAME in names,
        reward_manager=_get(config, "reward.reward_manager.name") == REWARD_MANAGER_NAME,
        estimator=_get(config, "algorithm.adv_estimator") == ADV_ESTIMATOR_NAME,
        trainer_mode=_get(config, "trainer.v1.trainer_mode") == TRAINER_MODE_NAME,
        agent_loop_known=complete,
    )


def _container(config: Any, path: str) -> dict:
    node = _get(config, path)
    if node is None:
        return {}
    value = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(value, dict):
        raise CompositionError([f"{path}: expected a mapping, got {value!r}"])
    return value


def setting_problems(config: Any) -> list[str]:
    """Unknown keys and invalid values under ``coars`` and ``algorithm.coars``, with each component's own message."""
    from coars_verl.agent_loop_config import AgentLoopConfig
    from coars_verl.credit_dump import DumpConfig
    from coars_verl.distill.config import SelfDistillConfig
    from coars_verl.dialogue.state import DialogueConfig
    from coars_verl.rewards.interaction import reward_config

    problems: list[str] = []
    coars = _container(config, "coars")
    algorithm_coars = _container(config, "algorithm.coars")
    for root, section, known in (("coars", coars, COARS_SECTIONS), ("algorithm.coars", algorithm_coars, ALGORITHM_COARS_SECTIONS)):
        unknown = sorted(set(section) - set(known))
        if unknown:
            problems.append(f"{root}: unknown key(s) {unknown}; expected some of {list(known)}")
    checks = (
        lambda: AgentLoopConfig.from_mapping(coars.get("agent_loop") or {}),
        lambda: DialogueConfig.from_mapping(coars.get("dialogue") or {}, coars.get("prompts") or {}),
        lambda: reward_config(config),
        lambda: SelfDistillConfig.from_mapping(algorithm_coars.get("self_distill") or {}),
        lambda: DumpConfig.from_mapping(coars.get("dump") or {}),
    )
    for check in checks:
        try:
            check()
        except (TypeError, ValueError) as error:
            problems.append(str(error))
    return problems


def composition_problems(config: Any) -> list[str]:
    """Every reason ``config`` cannot train correctly with the CoARS components it selects; [] when it can
    (also when it selects none and sets no ``coars`` key: a config that is not ours)."""
    chosen = selection(config)
    has_coars = bool(_container(config, "coars"))
    has_algorithm_coars = bool(_container(config, "algorithm.coars"))
    if not (chosen.agent_loop or chosen.reward_manager or chosen.estimator or chosen.trainer_mode or has_coars or has_algorithm_coars):
        return []
    problems = setting_problems(config)
    mode = f"trainer.v1.trainer_mode={TRAINER_MODE_NAME}"
    if chosen.agent_loop and not chosen.trainer_mode:
        problems.append(f"the {AGENT_LOOP_NAME} agent loop returns one sample per role; only {mode} trains each on its own role's "
                        "reward (verl's own trainer would give the user agent's samples the recommender's reward and advantage)")
    if chosen.reward_manager and not chosen.trainer_mode:
        problems.append(f"the {REWARD_MANAGER_NAME} reward manager passes both roles' rewards in reward_extra_info; only {mode} "
                        "hands each sample its own (verl's own trainer keeps the recommender's for every sample)")
    if chosen.reward_manager and not chosen.agent_loop and chosen.agent_loop_known:
        problems.append(f"the {REWARD_MANAGER_NAME} reward manager scores dialogues of the {AGENT_LOOP_NAME} agent loop: set "
                        f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_LOOP_NAME} or an agent_name column in the data")
    if chosen.trainer_mode and not chosen.estimator:
        problems.append(f"{mode} computes per-role advantages with algorithm.adv_estimator={ADV_ESTIMATOR_NAME}; got "
                        f"{_get(config, 'algorithm.adv_estimator')!r}")
    if chosen.estimator and not chosen.trainer_mode:
        problems.append(f"algorithm.adv_estimator={ADV_ESTIMATOR_NAME} needs each sample's role (and the teacher's delta), which "
                        f"only {mode} passes")
    if has_algorithm_coars and not chosen.estimator:
        problems.append(f"algorithm.coars.* is read only by algorithm.adv_estimator={ADV_ESTIMATOR_NAME}, which is not selected "
                        f"(adv_estimator={_get(config, 'algorithm.adv_estimator')!r}): the setting would be ignored")
    if chosen.trainer_mode and not chosen.agent_loop and chosen.agent_loop_known:
        problems.extend(_single_turn_source_problems(config))
    if chosen.estimator:
        problems.extend(teacher_token_budget_problems(config))
    if has_coars and not (chosen.agent_loop or chosen.reward_manager) and chosen.agent_loop_known:
        problems.append(f"coars.* is read by the {AGENT_LOOP_NAME} agent loop and the {REWARD_MANAGER_NAME} reward manager, and "
                        "neither is selected: the settings would be ignored")
    return problems


def _single_turn_source_problems(config: Any) -> list[str]:
    """With verl's own agent loops only the sources with a single-turn builder have anything to say
    (and a memory-reading one only with ``self_distill.memory_key``): the registry says which."""
    from coars_verl.distill.config import MODE_OFF, SelfDistillConfig
    from coars_verl.distill.contexts import NEEDS_MEMORY, teacher_source, teacher_source_names

    try:
        sd = SelfDistillConfig.from_mapping(_container(config, "algorithm.coars").get("self_distill") or {})
    except (TypeError, ValueError):
        return []  # reported by setting_problems

    def usable(source) -> bool:
        return source.single_turn is not None and (NEEDS_MEMORY not in source.needs or sd.memory_key is not None)

    if sd.mode == MODE_OFF or any(usable(teacher_source(name)) for name in sd.sources):
        return []
    choices = [name for name in teacher_source_names() if usable(teacher_source(name))]
    memory_readers = [name for name in teacher_source_names()
                      if teacher_source(name).single_turn is not None and NEEDS_MEMORY in teacher_source(name).needs]
    return [f"algorithm.coars.self_distill.sources={list(sd.sources)} on a single-turn task (no {AGENT_LOOP_NAME} agent loop): "
            f"none of them gives a context without a dialogue here, so no sample would get a teacher; use some of {choices}"
            + (f" (or {memory_readers} with algorithm.coars.self_distill.memory_key set)" if memory_readers and sd.memory_key is None else "")]


def uses_lora(config: Any) -> bool:
    """verl's own rule (``ref_in_actor``): with a LoRA adapter the reference model is the actor with
    its adapter disabled, scored by the actor worker."""
    rank = _get(config, "actor_rollout_ref.model.lora.rank", None) or _get(config, "actor_rollout_ref.model.lora_rank", 0) or 0
    return int(rank) > 0 or _get(config, "actor_rollout_ref.model.lora_adapter_path") is not None


@dataclass(frozen=True)
class TeacherScoringWorker:
    """The verl worker that scores the teacher records, and the keys it reads its log-prob batch sizes from.

    verl 0.9.1 (``workers/engine_workers.py``, ``ActorRolloutRefWorker.init_model``): the actor's
    ``compute_log_prob`` runs with ``rollout.log_prob_max_token_len_per_gpu`` and
    ``rollout.log_prob_micro_batch_size_per_gpu``, dynamic when ``actor.use_dynamic_bsz`` (the actor's
    ``ppo_max_token_len_per_gpu`` is the update's budget, not this pass's); a reference worker's
    ``compute_ref_log_prob`` reads the ``ref.log_prob_*`` keys."""

    mesh: str
    """The worker group's dispatch mesh: ``actor`` (actor_rollout_wg) or ``ref`` (ref_policy_wg)."""
    dynamic_key: str
    max_token_len_key: str
    micro_batch_key: str


ACTOR_SCORES = TeacherScoringWorker("actor", "actor_rollout_ref.actor.use_dynamic_bsz",
                                    "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu",
                                    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu")
REFERENCE_SCORES = TeacherScoringWorker("ref", "actor_rollout_ref.ref.log_prob_use_dynamic_bsz",
                                        "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu",
                                        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu")


def teacher_scoring_worker(config: Any, teacher: str) -> TeacherScoringWorker:
    """The reference worker for ``teacher=reference`` without LoRA; the actor otherwise (the policy,
    or under LoRA the actor with its adapter disabled)."""
    from coars_verl.distill.config import TEACHER_REFERENCE

    return REFERENCE_SCORES if teacher == TEACHER_REFERENCE and not uses_lora(config) else ACTOR_SCORES


TEACHER_CONTEXT_TOKENS_PER_CHAR = 1
"""Tokens per character of a teacher context, an upper bound for byte-level BPE tokenizers (Qwen,
Llama 3, GPT-2 style) on text of one UTF-8 byte per character: each token covers at least one byte.
The contexts are item titles and the models' own dialogue text; a catalogue in a script of 2-4 bytes
per character (CJK, accents throughout) can need up to 4 tokens per character: raise the budget."""
TEACHER_CONTEXT_OVERHEAD_TOKENS = 32
"""Tokens the teacher prompt adds around its context: the blank line that joins it to the system (or
first user) message, or, when the prompt has none, a new system message's chat-template markers
(Qwen2.5: ``<|im_start|>system\n ... <|im_end|>\n``, 5 tokens)."""


def teacher_context_token_bound(context_max_chars: int) -> int:
    """Tokens a teacher context of at most ``context_max_chars`` characters adds to the student's sequence."""
    return context_max_chars * TEACHER_CONTEXT_TOKENS_PER_CHAR + TEACHER_CONTEXT_OVERHEAD_TOKENS


def teacher_token_budget_problems(config: Any) -> list[str]:
    """With dynamic batch sizes verl asserts ``max_token_len >= the longest sequence`` of each micro-batch
    (``verl/utils/seqlen_balancing.py``), and a teacher record is the student's sequence plus its
    context: a budget tuned to prompt + response crashes the teacher pass at the first full-length
    sample that gets a context."""
    from coars_verl.distill.config import MODE_OFF, SelfDistillConfig

    try:
        sd = SelfDistillConfig.from_mapping(_container(config, "algorithm.coars").get("self_distill") or {})
    except (TypeError, ValueError):
        return []  # reported by setting_problems
    worker = teacher_scoring_worker(config, sd.teacher)
    if sd.mode == MODE_OFF or not _get(config, worker.dynamic_key, False):
        return []
    budget = _get(config, worker.max_token_len_key)
    prompt, response = int(_get(config, "data.max_prompt_length", 0) or 0), int(_get(config, "data.max_response_length", 0) or 0)
    needed = prompt + response + teacher_context_token_bound(sd.context_max_chars)
    if budget is None or int(budget) >= needed:
        return []
    return [f"{worker.max_token_len_key}={budget} is below the longest teacher record, {needed} tokens: "
            f"data.max_prompt_length {prompt} + data.max_response_length {response} + the teacher context, "
            f"algorithm.coars.self_distill.context_max_chars {sd.context_max_chars} characters at most "
            f"{TEACHER_CONTEXT_TOKENS_PER_CHAR} token each + {TEACHER_CONTEXT_OVERHEAD_TOKENS} tokens of template "
            f"(the {worker.mesh} worker scores the teacher with {worker.dynamic_key}=true, and verl's dynamic batching asserts "
            f"max_token_len >= the longest sequence); set {worker.max_token_len_key}={needed} or more, or lower context_max_chars"]


def check_composition(config: Any) -> None:
    """Raise :class:`CompositionError` listing every problem of ``config``; nothing when there is none."""
    problems = composition_problems(config)
    if problems:
        raise CompositionError(problems)


CPU_MIN_LOGICAL_CPUS = 16
"""Logical CPUs Ray needs on the CPU path to place verl's actors (TransferQueue units, task runner,
workers); with 2 (a 2-core machine's default) it waits forever without an error."""


def config_problems(config: Any, on_cpu: bool, machine_cpus: int) -> list[str]:
    """:func:`composition_problems`, the dialogue rows of the local data files
    (:func:`coars_verl.datasets.row_check.dialogue_row_problems`), and with ``on_cpu``
    (``VERL_PLATFORM=cpu``) :func:`cpu_problems`: what the driver check and the doctor report."""
    from coars_verl.datasets.row_check import dialogue_row_problems

    problems = composition_problems(config)
    problems += dialogue_row_problems(_as_list(_get(config, "data.train_files")) + _as_list(_get(config, "data.val_files")),
                                      _get(config, "actor_rollout_ref.rollout.agent.default_agent_loop"))
    if on_cpu:
        problems += cpu_problems(config, machine_cpus)
    return problems


def cpu_problems(config: Any, machine_cpus: int) -> list[str]:
    """Why ``config`` would hang or fail on the CPU platform (``VERL_PLATFORM=cpu``); [] when it would not."""
    problems = []
    num_cpus = _get(config, "ray_kwargs.ray_init.num_cpus")
    effective = int(num_cpus) if num_cpus is not None else machine_cpus
    if effective < CPU_MIN_LOGICAL_CPUS:
        problems.append(
            f"ray_kwargs.ray_init.num_cpus is {num_cpus!r} (Ray would see {effective} CPUs): verl's actors cannot all be placed and "
            f"the run would wait forever after the config dump; set ray_kwargs.ray_init.num_cpus={CPU_MIN_LOGICAL_CPUS} (logical "
            "CPUs, not cores)")
    gpus_needed = int(_get(config, "trainer.n_gpus_per_node", 1) or 1) * int(_get(config, "trainer.nnodes", 1) or 1)
    num_gpus = _get(config, "ray_kwargs.ray_init.num_gpus")
    if num_gpus is None or float(num_gpus) < gpus_needed:
        problems.append(
            f"ray_kwargs.ray_init.num_gpus is {num_gpus!r}: verl's resource pools ask Ray for {gpus_needed} GPU(s) even on CPU, where "
            f"the 'cpu' platform names logical ones; set +ray_kwargs.ray_init.num_gpus={gpus_needed}")
    for role in ("actor_rollout_ref.actor", "actor_rollout_ref.ref", "critic"):
        strategy = _get(config, f"{role}.strategy")
        if strategy == "fsdp" and (role != "critic" or _get(config, "critic.enable", False)):
            problems.append(f"{role}.strategy=fsdp (FSDP1) fails on CPU (\"The module has CPU parameters or buffers when "
                            f"sync_module_states=True\"); set {role}.strategy=fsdp2")
    return problems
