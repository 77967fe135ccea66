"""Progress bars (tqdm on stderr); off with ``quiet=True`` or the environment variable COARS_NO_PROGRESS=1."""

from __future__ import annotations

import os
from typing import Any

_DISABLED = bool(os.environ.get("COARS_NO_PROGRESS"))


def progress(iterable: Any = None, *, quiet: bool = False, **kwargs: Any):
    """A tqdm bar, or a no-op stand-in when progress is disabled or tqdm is missing."""
    disable = quiet or _DISABLED
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        disable = True
    if disable:
        return _NullBar(iterable, **kwargs)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


class _NullBar:
    def __init__(self, iterable: Any = None, total: int | None = None, **_: Any):
        self._it = iterable
        self.n = 0
        self.total = total

    def __iter__(self):
        return iter(self._it)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, *_: Any, **__: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
