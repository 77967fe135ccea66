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
AGENT_LOOP_KEYS = ("max_tokens_per_turn",)


def check_agent_loop_options(options: Any) -> None:
    """ValueError naming unknown ``coars.agent_loop`` keys (the agent loop and the driver check both call it)."""
    unknown = sorted(set(options) - set(AGENT_LOOP_KEYS))
    if unknown:
        raise ValueError(f"coars.agent_loop: unknown key(s) {unknown}; expected some of {list(AGENT_LOOP_KEYS)}")


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
    from coars_verl.credit_dump import DumpConfig
    from coars_verl.distill.config import SelfDistillConfig
    from coars_verl.dialogue.state import DialogueConfig
    from coars_verl.rewards.interaction import RewardConfig

    problems: list[str] = []
    coars = _container(config, "coars")
    algorithm_coars = _container(config, "algorithm.coars")
    for root, section, known in (("coars", coars, COARS_SECTIONS), ("algorithm.coars", algorithm_coars, ALGORITHM_COARS_SECTIONS)):
        unknown = sorted(set(section) - set(known))
        if unknown:
            problems.append(f"{root}: unknown key(s) {unknown}; expected some of {list(known)}")
    checks = (
        lambda: check_agent_loop_options(coars.get("agent_loop") or {}),
        lambda: DialogueConfig.from_mapping(coars.get("dialogue") or {}, coars.get("prompts") or {}),
        lambda: RewardConfig.from_mapping(coars.get("reward") or {}),
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
