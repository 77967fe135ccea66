"""``python -m coars_verl.doctor``: check, in a fresh process, that verl sees every CoARS component.

verl imports plugins from ``import verl`` and hides their import errors at DEBUG level, so a
broken install shows up only as an "unknown name" deep inside a Ray worker. This command
imports verl the way the trainer does, looks each component up in the verl registry that the
trainer will use, prints versions, and exits 1 if anything is missing or failed to import.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from coars_verl import constants as names


@dataclass
class ComponentStatus:
    kind: str
    name: str
    registry: str
    found: bool
    target: Optional[str] = None
    error: Optional[str] = None


def _platform(name: str) -> str:
    from verl.plugin.platform import PlatformRegistry

    cls = PlatformRegistry.get(name)
    if cls is None:
        raise LookupError(f"not in PlatformRegistry {PlatformRegistry.registered_names()}")
    return f"{cls.__module__}.{cls.__qualname__}"


def _rollout_backend(name: str) -> str:
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    replica = RolloutReplicaRegistry.get(name)
    adapter = get_rollout_class(name, "async")
    return f"{replica.__module__}.{replica.__qualname__} + {adapter.__qualname__}"


def _agent_loop(name: str) -> str:
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    if name not in _agent_loop_registry:
        raise LookupError(f"not in the agent-loop registry {sorted(_agent_loop_registry)}")
    return _agent_loop_registry[name]["_target_"]


def _reward_manager(name: str) -> str:
    from verl.experimental.reward_loop.reward_manager.registry import get_reward_manager_cls

    cls = get_reward_manager_cls(name)
    return f"{cls.__module__}.{cls.__qualname__}"


def _adv_estimator(name: str) -> str:
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    fn = get_adv_estimator_fn(name)
    return f"{fn.__module__}.{fn.__qualname__}"


def _trainer_mode(name: str) -> str:
    from verl.trainer.ppo.v1 import get_trainer_cls

    cls = get_trainer_cls(name)
    return f"{cls.__module__}.{cls.__qualname__}"


# kind -> (verl registry it lives in, lookup returning what the name resolves to)
LOOKUPS: dict[str, tuple[str, Callable[[str], str]]] = {
    "platform": ("verl.plugin.platform.PlatformRegistry", _platform),
    "rollout backend": ("verl.workers.rollout RolloutReplicaRegistry + _ROLLOUT_REGISTRY", _rollout_backend),
    "agent loop": ("verl.experimental.agent_loop _agent_loop_registry", _agent_loop),
    "reward manager": ("verl.experimental.reward_loop.reward_manager REWARD_MANAGER", _reward_manager),
    "advantage estimator": ("verl.trainer.ppo.core_algos ADV_ESTIMATOR_REGISTRY", _adv_estimator),
    "trainer mode": ("verl.trainer.ppo.v1 TRAINER_REGISTRY", _trainer_mode),
}

EXPECTED: tuple[tuple[str, str], ...] = (
    ("platform", names.PLATFORM_NAME),
    ("rollout backend", names.ROLLOUT_BACKEND_NAME),
    ("agent loop", names.AGENT_LOOP_NAME),
    ("reward manager", names.REWARD_MANAGER_NAME),
    ("advantage estimator", names.ADV_ESTIMATOR_NAME),
    ("trainer mode", names.TRAINER_MODE_NAME),
)

VERSIONED = ("coars-verl", "verl", "torch", "transformers", "ray", "tensordict", "TransferQueue", "hydra-core", "vllm", "flash-attn")


def package_versions() -> dict[str, Optional[str]]:
    versions = {"python": sys.version.split()[0]}
    for dist in VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def check_components() -> tuple[list[ComponentStatus], dict[str, str]]:
    """Import verl as the trainer does, then look every expected component up."""
    import verl  # noqa: F401  (loads the verl.plugins entry points)

    plugin = sys.modules.get("coars_verl.plugin")
    problems: dict[str, str] = {}
    if plugin is None:
        entry_points = [ep.value for ep in importlib.metadata.entry_points(group="verl.plugins")]
        problems["entry point"] = (
            "import verl did not load coars_verl.plugin; verl.plugins entry points found: "
            f"{entry_points or 'none'} (is coars-verl installed in this environment? "
            "is VERL_USE_EXTERNAL_PLUGINS set to exclude it?)"
        )
        try:
            import coars_verl.plugin as plugin  # noqa: F811  (still report what registers directly)
        except Exception as exc:  # pragma: no cover - reported below
            problems["coars_verl.plugin import"] = repr(exc)
    if plugin is not None:
        problems.update(plugin.REGISTRATION_ERRORS)

    statuses = []
    for kind, name in EXPECTED:
        registry, lookup = LOOKUPS[kind]
        try:
            target = lookup(name)
        except Exception as exc:
            statuses.append(ComponentStatus(kind, name, registry, False, error=f"{type(exc).__name__}: {exc}"))
            continue
        if "entry point" in problems:  # found only because this command imported the plugin itself; main_ppo would not
            statuses.append(ComponentStatus(kind, name, registry, False, target=target, error="not loaded by verl (see the entry point error)"))
        else:
            statuses.append(ComponentStatus(kind, name, registry, True, target=target))
    return statuses, problems


def cpu_path() -> dict[str, object]:
    """Whether main_ppo started from this environment takes our CPU path (only ``VERL_PLATFORM=cpu`` selects it)."""
    import os

    import torch

    from coars_verl.cpu.platform import PLATFORM_ENV_VAR, cpu_platform_requested

    active = cpu_platform_requested()
    if active:
        text = f"active ({PLATFORM_ENV_VAR}=cpu): the 'cpu' platform and, with rollout.name=hf, the transformers rollout"
    else:
        value = os.environ.get(PLATFORM_ENV_VAR)
        text = (f"inactive ({PLATFORM_ENV_VAR}={value!r}" if value else f"inactive ({PLATFORM_ENV_VAR} unset") + "): verl picks its platform; " + (
            "CUDA is available" if torch.cuda.is_available() else f"no CUDA here, so set {PLATFORM_ENV_VAR}=cpu (the CPU recipes do it for Ray's workers)")
    return {"active": active, "text": text}


def config_problems(config_name: str, overrides: list[str], config_path: Optional[str] = None) -> list[str]:
    """Compose a recipe (or verl's ``ppo_trainer``) as main_ppo would and name what cannot work; see
    :mod:`coars_verl.composition`. The CPU checks apply when ``VERL_PLATFORM=cpu`` is set."""
    import os
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from coars_verl.composition import config_problems
    from coars_verl.cpu.launch import RECIPES_DIR
    from coars_verl.cpu.platform import cpu_platform_requested

    directory = Path(config_path).expanduser().resolve() if config_path else RECIPES_DIR
    if not (directory / f"{config_name}.yaml").is_file():
        import verl

        verl_config = Path(verl.__file__).parent / "trainer" / "config"
        if config_path is None and (verl_config / f"{config_name}.yaml").is_file():
            directory = verl_config
        else:
            return [f"--config-name {config_name}: no {config_name}.yaml in {directory}"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(directory), version_base=None):
            config = compose(config_name=config_name, overrides=overrides)
    except Exception as exc:  # a typo in an override is a finding, not a crash
        return [f"cannot compose {config_name} with {overrides}: {type(exc).__name__}: {exc}"]
    return config_problems(config, cpu_platform_requested(), os.cpu_count() or 1)


def gpu_report() -> tuple[str, dict[str, str]]:
    """(torch's CUDA build and the NVIDIA driver in one line, what the GPU recipes need and this
    environment lacks, each with the fix). The GPU recipes use sdpa attention (recipes/base/gpu.yaml):
    flash-attn is optional, so its absence is not a problem."""
    import torch

    from coars_verl.cuda_builds import cuda_build_problem, describe, nvidia_driver

    driver = nvidia_driver()
    problems: dict[str, str] = {}
    cuda = cuda_build_problem(torch.__version__, torch.version.cuda, driver, torch.cuda.is_available())
    if cuda:
        problems["cuda"] = cuda
    try:
        importlib.import_module("vllm")
    except Exception as exc:  # an installed but broken module is as bad as a missing one
        problems["vllm"] = (f"import vllm failed ({type(exc).__name__}: {exc}); fix: `make env-gpu` or pip install "
                            "'coars-verl[gpu]' (verl[vllm]==0.9.1 pins the vLLM that verl supports; docs/gpu.md for CUDA 12 drivers)")
    return describe(torch.__version__, torch.version.cuda, driver), problems


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    parser.add_argument("--gpu", action="store_true", help="also check what the GPU recipes need: torch's CUDA build against the "
                                                           "NVIDIA driver (nvidia-smi), and vLLM")
    parser.add_argument("--config-name", help="also compose this recipe (or verl's ppo_trainer) with the overrides and check that "
                                              "its CoARS components can work together (and, with VERL_PLATFORM=cpu, on CPU)")
    parser.add_argument("--config-path", help="folder of --config-name (default: our recipes/, then verl's own config)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for --config-name, as main_ppo takes them")
    args = parser.parse_args(argv)
    if args.overrides and not args.config_name:
        parser.error("overrides need --config-name")

    versions = package_versions()
    statuses, problems = check_components()
    cpu = cpu_path()
    gpu_line = None
    if args.gpu:
        gpu_line, found = gpu_report()
        problems.update({f"gpu: {k}": v for k, v in found.items()})
    if args.config_name:
        problems.update({f"config {args.config_name}": "\n".join(f"- {p}" for p in found)
                         for found in [config_problems(args.config_name, args.overrides, args.config_path)] if found})
    ok = all(s.found for s in statuses) and not problems
    if args.json:
        print(json.dumps({"ok": ok, "versions": versions, "cpu_path": cpu, "components": [asdict(s) for s in statuses],
                          "problems": problems, **({"gpu": gpu_line} if gpu_line else {})}, indent=2))
        return 0 if ok else 1

    print("coars_verl doctor")
    print("versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items()))
    print(f"CPU path: {cpu['text']}")
    if gpu_line:
        print(f"GPU build: {gpu_line}")
    width = max(len(s.kind) for s in statuses)
    for s in statuses:
        mark = "ok     " if s.found else ("NOT LOADED" if s.target else "MISSING")
        detail = s.target if s.found else s.error
        print(f"  [{mark}] {s.kind:<{width}}  {s.name:<20} {detail}")
    for what, text in problems.items():
        print(f"\nERROR ({what}):\n{text}")
    done = "all components registered" + (" and the GPU recipes' needs met" if args.gpu else "") + (
        f"; {args.config_name} combines them correctly" if args.config_name else "")
    print(done if ok else "\nsomething is missing: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
