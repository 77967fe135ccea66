"""One way to read a ``coars.*`` / ``algorithm.coars.*`` section into its typed dataclass (pure; no verl).

Every config dataclass (:class:`~coars_verl.dialogue.state.DialogueConfig`,
:class:`~coars_verl.rewards.interaction.RewardConfig`,
:class:`~coars_verl.distill.config.SelfDistillConfig`) is read by :func:`read_section`, so a key
means the same everywhere: unknown keys are an error naming the section, and each value must
already have its field's type (YAML and Hydra's command line parse numbers and booleans, so a
quoted ``"0.5"`` is a mistake in the recipe, not something to guess at). The rules, from the
field's annotation:

* ``float``: an int or a float (not a bool), stored as float;
* ``int``: an int (not a bool), or a float with an integral value;
* ``bool`` / ``str``: exactly that type;
* ``tuple[str, ...]``: a list or tuple of strings, or one comma-separated string;
* ``Optional[X]``: None or what ``X`` accepts;
* any other annotation: passed to the dataclass as given (its ``__post_init__`` checks it).

Range checks (``gamma`` in [0, 1], known modes, ...) stay in each dataclass's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def read_section(cls: type[T], mapping: Mapping[str, Any] | None, section: str, exclude: tuple[str, ...] = (), **fixed: Any) -> T:
    """``cls(**values)`` from ``mapping`` (a dict, an OmegaConf node or None: all defaults).

    Args:
        section: the dotted config path, used in every error message (``coars.reward``).
        exclude: fields that the mapping may not set (they are built by the caller and given in ``fixed``).
        fixed: keyword arguments passed to ``cls`` as they are.
    """
    values = _plain(mapping)
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.name not in exclude and f.name not in fixed]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{section}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    kwargs = {key: coerce(value, hints[key], f"{section}.{key}") for key, value in values.items()}
    return cls(**kwargs, **fixed)


def config_section(config: Any, path: str) -> Any:
    """The node at the dotted ``path`` of a whole run config (an OmegaConf node or nested mappings);
    None where some key on the way is absent."""
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra-core
        DictConfig = ()
    if DictConfig and isinstance(config, DictConfig):
        return OmegaConf.select(config, path, default=None)
    node = config
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def coerce(value: Any, kind: Any, name: str) -> Any:
    """``value`` as the annotation ``kind`` asks (rules in the module docstring); ValueError naming ``name``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(value, inner[0], name)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or float(value) != int(value):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise ValueError(f"{name}: expected {'true/false' if kind is bool else 'a string'}, got {value!r}")
        return value
    if origin is tuple and args and args[0] is str:
        items = [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
            raise ValueError(f"{name}: expected a list of strings or a comma-separated string, got {value!r}")
        return tuple(items)
    return value


def _plain(mapping: Any) -> dict[str, Any]:
    if mapping is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra-core
        DictConfig = ()
    if DictConfig and isinstance(mapping, DictConfig):
        return dict(OmegaConf.to_container(mapping, resolve=True))
    return dict(mapping)
