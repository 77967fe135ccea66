"""Shared plumbing of the model commands: marker file, atomic output folder, summary line.

A finished build folder holds ``coars_build.json`` (the *marker*), written last. It records the
builder's name and format version, the build options and the versions of the libraries that
produced the files. A folder whose marker matches the requested build is reused as is; anything
else (no marker, other options, missing files) is rebuilt. Builds go to a temporary sibling folder
that is renamed into place, so a reader never sees a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

MARKER_NAME = "coars_build.json"


@dataclass(frozen=True)
class BuildResult:
    """What a build command did: the folder, whether it was (re)built, and the summary facts."""

    path: Path
    built: bool
    seconds: float
    num_params: int
    vocab_size: int
    kind: str

    def summary(self) -> str:
        action = "built" if self.built else "already built (skipped)"
        return (
            f"{self.kind}: {self.num_params / 1e6:.2f}M params, vocab {self.vocab_size}, "
            f"{action} in {self.seconds:.1f}s"
        )


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose output format or numerics the build depends on."""
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def make_marker(kind: str, format_version: int, options: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    marker = {
        "builder": kind,
        "format_version": format_version,
        "options": dict(options),
        "versions": library_versions(),
    }
    marker.update(extra)
    return marker


def read_marker(out_dir: Path) -> dict[str, Any] | None:
    try:
        with open(Path(out_dir) / MARKER_NAME, encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def is_complete(out_dir: Path, expected: Mapping[str, Any]) -> bool:
    """Whether ``out_dir`` holds a finished build equal to ``expected`` (a marker dict)."""
    marker = read_marker(out_dir)
    if marker is None:
        return False
    for key in ("builder", "format_version", "options", "versions"):
        if marker.get(key) != expected.get(key):
            return False
    files = marker.get("files") or []
    return all((Path(out_dir) / name).is_file() for name in files)


def _write_marker(folder: Path, marker: Mapping[str, Any]) -> None:
    marker = dict(marker)
    marker["files"] = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MARKER_NAME)
    with open(folder / MARKER_NAME, "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=2, sort_keys=True)
        f.write("\n")


def _fix_permissions(folder: Path) -> None:
    """mkdtemp makes 0700 folders (and some writers 0600 files); give the build the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for p in folder.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def atomic_build(
    out_dir: str | os.PathLike,
    marker: Mapping[str, Any],
    build: Callable[[Path], None],
    force: bool = False,
) -> tuple[Path, bool]:
    """Run ``build(tmp_dir)`` and move the result to ``out_dir``, unless it is already complete.

    Returns ``(out_dir, built)``. Concurrent builders of the same folder are safe: the first
    rename wins, and a loser whose rival produced the same build just drops its own copy.
    """
    out = Path(out_dir).expanduser().absolute()
    if not force and is_complete(out, marker):
        return out, False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        build(tmp)
        _write_marker(tmp, marker)
        _fix_permissions(tmp)
        if not force and is_complete(out, marker):
            return out, False  # a concurrent builder finished the same build first
        if out.exists() or out.is_symlink():
            if out.is_dir() and not out.is_symlink():
                trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.rename(out, trash / "old")
                shutil.rmtree(trash, ignore_errors=True)
            else:
                out.unlink()
        try:
            os.rename(tmp, out)
        except OSError:
            # Another process renamed its build into place between our check and our rename.
            if is_complete(out, marker):
                return out, True
            raise
        tmp = None
        return out, True
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def timed(fn: Callable[[], tuple[Path, bool]]) -> tuple[Path, bool, float]:
    start = time.perf_counter()
    path, built = fn()
    return path, built, time.perf_counter() - start


def count_params_from_safetensors(folder: Path) -> int:
    """Number of parameters stored in the folder's safetensors files (tied weights counted once)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                shape = st.get_slice(name).get_shape()
                n = 1
                for d in shape:
                    n *= int(d)
                total += n
    return total
