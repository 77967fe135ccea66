"""Resolve a config's ``${oc.env:...}`` values where the user launched, not inside a Ray actor.

verl resolves the config inside the Ray actor that runs the trainer (``TaskRunner.run`` in
verl/trainer/main_ppo.py). On a cluster started beforehand with ``ray start`` that actor has the
environment of the node's raylet, not of the shell that ran main_ppo: ``${oc.env:COARS_MODEL_PATH,...}``
and ``${oc.env:COARS_DATA_DIR,data}`` (recipes/base/gpu.yaml, base/*_gpu.yaml) would silently take
their defaults there. The plugin's config check runs in the driver on the config object that
main_ppo then hands to that actor, so resolving them there carries the launching shell's values.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Union

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

ENV_RESOLVER = "oc.env:"


def _reads_environment(node) -> bool:
    raw = node._value()
    return isinstance(raw, str) and ENV_RESOLVER in raw.replace(" ", "")


def resolve_launch_environment(config: Union[DictConfig, ListConfig], prefix: str = "") -> list[str]:
    """Replace, in place, every value that reads an environment variable by its value in this process;
    returns the keys replaced. Other interpolations stay (verl resolves them later, to the same values)."""
    replaced: list[str] = []
    keys = range(len(config)) if isinstance(config, ListConfig) else list(config.keys())
    for key in keys:
        node = config._get_node(key)
        where = f"{prefix}[{key}]" if isinstance(config, ListConfig) else f"{prefix}{'.' if prefix else ''}{key}"
        if isinstance(node, (DictConfig, ListConfig)) and not node._is_none() and not node._is_missing():
            if OmegaConf.is_interpolation(config, key):
                continue  # a whole section by reference: its target is resolved where it stands
            replaced += resolve_launch_environment(node, where)
        elif OmegaConf.is_interpolation(config, key) and _reads_environment(node):
            value = config[key]
            with open_dict(config) if isinstance(config, DictConfig) else nullcontext():
                config[key] = value
            replaced.append(where)
    return replaced

