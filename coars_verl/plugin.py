"""Entry point of verl's ``verl.plugins`` group: importing it registers every CoARS component.

verl imports this module from ``import verl`` (in the driver and in every Ray worker) and hides
any exception at DEBUG level. So each component registers on its own, a failure is logged at
ERROR level and kept in :data:`REGISTRATION_ERRORS`, and ``python -m coars_verl.doctor`` turns
missing components into a non-zero exit. ``COARS_VERL_STRICT=1`` re-raises instead.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import traceback

logger = logging.getLogger("coars_verl")

# (component, module whose import registers it, callable in that module to run, or None)
COMPONENT_MODULES: tuple[tuple[str, str, str | None], ...] = (
    ("config check in the driver", "coars_verl.plugin", "install_config_check"),
    ("cpu platform + hf rollout backend", "coars_verl.cpu.registration", "register_cpu_components"),
    ("agent loop", "coars_verl.agent_loop", None),
    ("reward manager", "coars_verl.reward_manager", None),
    ("advantage estimator", "coars_verl.estimator", None),
    ("trainer mode", "coars_verl.trainer", None),
)

REGISTRATION_ERRORS: dict[str, str] = {}


def checked_config(validate_config):
    """verl's ``validate_config`` followed by our composition check (:mod:`coars_verl.composition`) and,
    on the CPU platform, the CPU checks: main_ppo calls it in the driver, before Ray starts, so a
    config that would train wrongly, ignore a setting or hang stops there with our message. First it
    resolves the config's ``${oc.env:...}`` values in the driver (:mod:`coars_verl.launch_env`): main_ppo
    hands this same config object to the Ray actor that runs the trainer, whose environment on a
    ``ray start`` cluster is not the launching shell's."""
    if getattr(validate_config, "coars_checked", False):
        return validate_config

    @functools.wraps(validate_config)
    def validate_then_check(config, *args, **kwargs):
        from omegaconf import DictConfig

        from coars_verl.launch_env import resolve_launch_environment

        if isinstance(config, DictConfig):
            resolve_launch_environment(config)
        result = validate_config(config, *args, **kwargs)
        from coars_verl.composition import CompositionError, config_problems
        from coars_verl.cpu.platform import cpu_platform_requested

        problems = config_problems(config, cpu_platform_requested(), os.cpu_count() or 1)
        if problems:
            raise CompositionError(problems)
        return result

    validate_then_check.coars_checked = True
    return validate_then_check


def install_config_check() -> None:
    """Wrap ``verl.utils.config.validate_config`` (and the name ``verl.utils`` re-exports) with :func:`checked_config`.
    Runs at plugin import, inside ``import verl``, before main_ppo binds the name."""
    import verl.utils
    import verl.utils.config as verl_config

    verl_config.validate_config = checked_config(verl_config.validate_config)
    verl.utils.validate_config = verl_config.validate_config
    for module_name in ("verl.trainer.main_ppo", "verl.trainer.main_ppo_v0"):
        module = sys.modules.get(module_name)  # imported before the plugin (unusual): patch its binding too
        if module is not None and hasattr(module, "validate_config"):
            module.validate_config = verl_config.validate_config


def _register(component: str, module_name: str, function_name: str | None) -> None:
    try:
        module = importlib.import_module(module_name)
        if function_name:
            getattr(module, function_name)()
    except Exception as exc:
        REGISTRATION_ERRORS[component] = "".join(traceback.format_exception(exc))
        logger.error("coars_verl: could not register %s (%s): %s", component, module_name, exc)
        if os.environ.get("COARS_VERL_STRICT", "0") == "1":
            raise


for _component, _module, _function in COMPONENT_MODULES:
    _register(_component, _module, _function)
