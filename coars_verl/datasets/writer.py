"""Atomic, deterministic writing of parquet and JSON outputs.

Files are written to a temporary file in the same folder, flushed to disk, then moved into place
with ``os.replace``; a whole output folder is built in a temporary sibling folder and renamed at
the end (``atomic_output_dir``). A crash or Ctrl-C leaves either the previous output or none,
never a half-written one.

Parquet bytes depend only on the table: pyarrow writer, fixed schema, no pandas metadata, fixed
compression and row-group size, no timestamps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


OUTPUT_MARKER = "stats.json"
"""A folder holding this file (with generator == GENERATOR) is ours and may be replaced."""
GENERATOR = "coars_verl.datasets"

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "row_group_size": 16384,
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_version": "1.0",
}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_p = Path(tmp)
    try:
        yield tmp_p
        with open(tmp_p, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_p, 0o644)
        os.replace(tmp_p, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_p.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    """Write ``table`` deterministically and atomically (schema metadata is dropped)."""
    table = table.replace_schema_metadata(None)
    with _atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")
    atomic_write_bytes(path, data)


def _is_ours(path: Path) -> bool:
    marker = path / OUTPUT_MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text("utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; on success it replaces ``out``.

    An existing ``out`` is replaced only when it is empty or was written by this package (it holds
    our stats.json), so a mistyped ``--out`` never deletes unrelated files. On any exception
    (including KeyboardInterrupt) the temporary folder is removed and ``out`` is left untouched.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not (overwrite and _is_ours(out)):
            raise FileExistsError(
                f"{out}: folder is not empty and was not written by data_prep (no {OUTPUT_MARKER} from "
                f"{GENERATOR}); choose another --out or empty it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rmdir(old)
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
