"""Entry point of verl's ``verl.plugins`` group: importing it registers every CoARS component.

verl imports this module from ``import verl`` (in the driver and in every Ray worker) and hides
any exception at DEBUG level. So each component registers on its own, a failure is logged at
ERROR level and kept in :data:`REGISTRATION_ERRORS`, and ``python -m coars_verl.doctor`` turns
missing components into a non-zero exit. ``COARS_VERL_STRICT=1`` re-raises instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import traceback

logger = logging.getLogger("coars_verl")

# (component, module whose import registers it, callable in that module to run, or None)
COMPONENT_MODULES: tuple[tuple[str, str, str | None], ...] = (
    ("cpu platform + hf rollout backend", "coars_verl.cpu.registration", "register_cpu_components"),
    ("agent loop", "coars_verl.agent_loop", None),
    ("reward manager", "coars_verl.reward_manager", None),
    ("advantage estimator", "coars_verl.estimator", None),
    ("trainer mode", "coars_verl.trainer", None),
)

REGISTRATION_ERRORS: dict[str, str] = {}


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
