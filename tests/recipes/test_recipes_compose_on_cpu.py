"""Every recipe composes under Hydra, passes verl's config validation, and its sections build."""

import dataclasses
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config
from verl.workers.config import FSDPActorConfig, RolloutConfig

from coars_verl.agent_loop import coars_section
from coars_verl.trainer import reference_teacher_problem
from coars_verl.dialogue.state import DialogueConfig
from coars_verl.estimator import self_distill_config
from coars_verl.rewards.interaction import RewardConfig
from coars_verl.recipes import RECIPES_DIR

RECIPES = RECIPES_DIR
PATHS = ["actor_rollout_ref.model.path=/models/m", "data.train_files=/d/train.parquet", "data.val_files=/d/valid.parquet"]
ABLATIONS = sorted(p.stem for p in (RECIPES / "ablation").glob("*.yaml"))


def _compose(name, overrides=()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(RECIPES), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


VLLM_LORA_RANKS = {1, 8, 16, 32, 64, 128, 256, 320, 512}  # what vLLM's max_lora_rank accepts


def _check(cfg):
    checked = cfg
    if cfg.actor_rollout_ref.rollout.name == "vllm" and cfg.actor_rollout_ref.model.lora_rank > 0:
        # verl checks the LoRA rank against vLLM by importing vllm, which this CPU machine lacks
        assert cfg.actor_rollout_ref.model.lora_rank in VLLM_LORA_RANKS
        checked = OmegaConf.merge(cfg, {"actor_rollout_ref": {"rollout": {"name": "hf"}}})
    validate_config(checked, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # as verl's TaskRunner resolves it
    omega_conf_to_dataclass(resolved.actor_rollout_ref.rollout, dataclass_type=RolloutConfig)
    actor_fields = {f.name for f in dataclasses.fields(FSDPActorConfig)} | {"_target_"}
    assert set(resolved.actor_rollout_ref.actor) <= actor_fields, set(resolved.actor_rollout_ref.actor) - actor_fields
    if cfg.trainer.v1.trainer_mode == "coars_sync":
        assert cfg.algorithm.adv_estimator == "coars_grpo" and cfg.reward.reward_manager.name == "coars_interaction"
        DialogueConfig.from_mapping(coars_section(cfg, "dialogue"), coars_section(cfg, "prompts"))
        RewardConfig.from_mapping(coars_section(cfg, "reward"))
        return self_distill_config(cfg.algorithm)


@pytest.mark.parametrize("dataset", ["movielens", "lastfm", "instruments"])
def test_reczero_recipes_are_plain_grpo_on_the_reczero_rows(dataset):
    cfg = _compose(f"reczero_{dataset}")
    _check(cfg)
    coars = _compose(f"coars_{dataset}")
    assert cfg.algorithm.adv_estimator == "grpo" and cfg.trainer.v1.trainer_mode != "coars_sync"
    assert cfg.reward.custom_reward_function.path == "pkg://coars_verl.rewards.reczero"
    assert OmegaConf.select(cfg, "coars", default=None) is None  # no dialogue, no user agent
    assert OmegaConf.select(cfg, "actor_rollout_ref.rollout.agent.default_agent_loop") != "coars_dialogue"
    # the same samples as the dialogue recipe: its data folder's reczero/ rows
    for key in ("train_files", "val_files"):
        dialogue_file = Path(OmegaConf.select(coars, f"data.{key}"))
        assert Path(OmegaConf.select(cfg, f"data.{key}")) == dialogue_file.parent / "reczero" / dialogue_file.name


@pytest.mark.parametrize("dataset", ["movielens", "lastfm", "instruments"])
def test_dataset_recipes_compose_and_validate(dataset):
    cfg = _compose(f"coars_{dataset}")
    assert cfg.actor_rollout_ref.rollout.name == "vllm" and cfg.actor_rollout_ref.model.lora_rank > 0
    assert OmegaConf.select(cfg, "data.train_files", throw_on_missing=False).endswith("train.parquet")
    assert _check(cfg).mode == "rlsd"


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_each_ablation_is_one_override_of_a_dataset_recipe(ablation):
    base = _compose("coars_movielens")
    cfg = _compose("coars_movielens", [f"+ablation={ablation}"])
    sd = _check(cfg)
    changed = {k for k in ("mode", "sources", "teacher") if getattr(sd, k) != getattr(_check(base), k)}
    if ablation == "outcome_only":
        assert cfg.coars.reward.mode == "outcome" and sd.mode == "off"
    elif ablation == "no_self_distill":
        assert changed == {"mode"} and sd.mode == "off"
    elif ablation == "no_coupling":
        assert cfg.coars.reward.beta == 0.0 and base.coars.reward.beta == 0.5 and not changed
    elif ablation == "teacher_reference":
        # LoRA: the actor without its adapter is the reference; no KL term, no reference worker
        assert sd.teacher == "reference" and not need_reference_policy(cfg) and reference_teacher_problem(cfg) is None
    else:
        assert sd.sources == (ablation.removeprefix("teacher_"),)


def test_command_line_overrides_reach_lora_group_size_batches_and_coars_switches():
    cfg = _compose(
        "coars_lastfm",
        ["actor_rollout_ref.model.lora_rank=16", "actor_rollout_ref.rollout.n=4", "data.train_batch_size=16",
         "coars.dialogue.max_turns=3", "algorithm.coars.self_distill.mode=additive", "coars.reward.beta=1.0"],
    )
    assert (cfg.actor_rollout_ref.model.lora_rank, cfg.actor_rollout_ref.rollout.n, cfg.data.train_batch_size) == (16, 4, 16)
    assert _check(cfg).mode == "additive" and cfg.coars.dialogue.max_turns == 3 and cfg.coars.reward.beta == 1.0


@pytest.mark.parametrize("name", ["cpu_coars_tiny", "cpu_coars_smollm2", "cpu_grpo_tiny", "cpu_learning_tiny", "cpu_reczero_tiny"])
def test_cpu_recipes_compose_and_validate(name):
    cfg = _compose(name, PATHS)
    assert cfg.actor_rollout_ref.rollout.name == "hf"
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM == "cpu"
    _check(cfg)


def test_the_learning_recipe_uses_the_compact_prompts_the_evaluation_reads():
    import yaml

    cfg = _compose("cpu_learning_tiny", PATHS)
    compact = yaml.safe_load((RECIPES / "prompts" / "compact.yaml").read_text())
    assert OmegaConf.to_container(cfg.coars.prompts) == compact
    templates = DialogueConfig.from_mapping(coars_section(cfg, "dialogue"), coars_section(cfg, "prompts")).templates
    assert templates.recommender_system == compact["recommender_system"]
    assert (cfg.actor_rollout_ref.rollout.n, cfg.data.train_batch_size, cfg.actor_rollout_ref.actor.ppo_mini_batch_size) == (8, 8, 4)
    assert _compose("cpu_learning_tiny", [*PATHS, "+ablation=outcome_only"]).coars.reward.mode == "outcome"


def test_the_reference_teacher_without_lora_asks_for_a_zero_weight_kl_term():
    cfg = _compose("cpu_coars_tiny", [*PATHS, "+ablation=teacher_reference"])
    assert "use_kl_loss=true" in reference_teacher_problem(cfg)
    fixed = _compose("cpu_coars_tiny", [*PATHS, "+ablation=teacher_reference", "actor_rollout_ref.actor.use_kl_loss=true",
                                        "actor_rollout_ref.actor.kl_loss_coef=0"])
    assert reference_teacher_problem(fixed) is None and need_reference_policy(fixed)


DATASETS = ["movielens", "lastfm", "instruments"]


@pytest.mark.parametrize("method, rows", [("coars", ""), ("reczero", "reczero/")])
def test_the_dataset_recipes_of_a_method_differ_only_in_their_dataset_part(method, rows, monkeypatch):
    """coars_<dataset> (and reczero_<dataset>) compose to one config but for the dataset part
    (recipes/dataset/<dataset>.yaml), from which the data files and the run's name follow: a setting
    changed in one recipe only fails here."""
    monkeypatch.setenv("COARS_DATA_DIR", "/data")
    rest = {}
    for dataset in DATASETS:
        cfg = _compose(f"{method}_{dataset}")
        part = OmegaConf.select(cfg, "dataset")
        assert part is not None and part.name == dataset, f"{method}_{dataset}: no dataset part (dataset/{dataset}.yaml)"
        assert cfg.data.train_files == f"/data/{part.folder}/{rows}train.parquet"
        assert cfg.data.val_files == f"/data/{part.folder}/{rows}valid.parquet"
        assert cfg.trainer.experiment_name == f"{method}_{dataset}"
        unresolved = OmegaConf.to_container(cfg, resolve=False)  # the data keys are interpolations of the dataset part
        unresolved.pop("dataset")
        rest[dataset] = unresolved
    for dataset in DATASETS[1:]:
        assert rest[dataset] == rest[DATASETS[0]], f"{method}_{dataset} differs from {method}_{DATASETS[0]} beyond its dataset part"


def test_the_components_page_lists_every_ablation():
    """The ablations are the files of recipes/ablation/: the components page's table names each (brace lists expanded)."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "components.md").read_text()
    listed = set()
    for stem, options in re.findall(r"\+ablation=(\w*?)(?:\{([\w,]+)\})?`", page):
        listed |= {stem + option for option in options.split(",")} if options else {stem}
    assert listed == set(ABLATIONS), f"docs/components.md lists {sorted(listed)}, recipes/ablation/ has {ABLATIONS}"
