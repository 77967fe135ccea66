"""Strict readers for the raw text formats: every problem becomes a DataFormatError naming the
file, the line and what was expected.

Files ending in ``.gz`` are decompressed transparently. Delimited files are parsed with pandas'
C parser (fast), then validated column by column so that a bad value is reported with its line.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from coars_verl.datasets.errors import DataFormatError, DropCounter
from coars_verl.datasets.progress import progress


_SUBST_SEP = "\x1f"  # stands in for multi-character separators such as MovieLens-1M's "::"


def check_encoding(encoding: str) -> str:
    """Return the codec's canonical name, or raise DataFormatError for an unknown encoding."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise DataFormatError(
            None, "a known text encoding such as utf-8 or latin-1 (--encoding)", found=encoding
        ) from None


def find_file(raw_dir: str | os.PathLike, names: Sequence[str], what: str) -> Path:
    """First of ``names`` found in ``raw_dir`` or in one of its immediate subfolders.

    Official archives unpack into a folder (``ml-100k/u.data``), so both ``--raw-dir ml-100k`` and
    ``--raw-dir <parent of ml-100k>`` work. Subfolders are searched in sorted order.
    """
    root = Path(raw_dir)
    if not root.is_dir():
        raise DataFormatError(root, f"a folder holding {what}", found="no such folder")
    for name in names:
        p = root / name
        if p.is_file():
            return p
    for sub in sorted(x for x in root.iterdir() if x.is_dir()):
        for name in names:
            p = sub / name
            if p.is_file():
                return p
    shown = " or ".join(repr(n) for n in names)
    raise DataFormatError(
        root, f"{what}: a file named {shown} in this folder or one of its subfolders", found="no such file"
    )


def read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "an existing file", found="no such file")
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFormatError(
            path, "a readable file" + (" (gzip)" if path.name.endswith(".gz") else ""), found=str(e)
        ) from None


def decode_text(data: bytes, path: str | os.PathLike, encoding: str) -> str:
    encoding = check_encoding(encoding)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFormatError(
            path,
            f"text encoded as {encoding} (pass --encoding to read another encoding)",
            line=line,
            found=f"bytes {data[e.start:e.end + 8]!r}",
        ) from None
    if text.startswith("\ufeff"):  # byte-order mark
        text = text[1:]
    return text


def read_delimited(
    path: str | os.PathLike,
    *,
    sep: str,
    columns: Sequence[str],
    encoding: str,
    header: Sequence[str] | None = None,
    header_mode: str = "none",
    int_columns: Sequence[str] = (),
    float_columns: Sequence[str] = (),
    what: str = "",
    drops: DropCounter | None = None,
    text: str | None = None,
) -> pd.DataFrame:
    """Read a delimited text file with exactly ``len(columns)`` fields per line.

    header_mode: "none" (no header line), "exact" (the first line must equal ``header`` joined by
    ``sep``), or "skip" (the first line is a header of the right width; its names are not checked).
    Text columns are returned as Python-object strings, ``int_columns`` as int64 and
    ``float_columns`` as float64. Blank lines are skipped and counted under ``blank_lines``.
    Any malformed line raises DataFormatError with its 1-based line number.
    """
    path = Path(path)
    label = what or "a delimited file"
    n = len(columns)
    if text is None:
        text = decode_text(read_bytes(path), path, encoding)
    sep_shown = {"\t": "tab", ",": "comma", "|": "'|'"}.get(sep, repr(sep))
    orig_sep = sep
    if len(sep) > 1:
        if _SUBST_SEP in text:
            line = text[: text.index(_SUBST_SEP)].count("\n") + 1
            raise DataFormatError(path, f"{label} without control character \\x1f", line=line)
        text = text.replace(sep, _SUBST_SEP)
        sep = _SUBST_SEP
    text = text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    first = 0
    if header_mode != "none":
        nl = text.index("\n")
        head = text[:nl]
        fields = head.split(sep)
        if header_mode == "exact":
            assert header is not None
            if [f.strip() for f in fields] != list(header):
                raise DataFormatError(
                    path, f"{label} with the header line {sep_shown}-separated {list(header)}", line=1, found=head
                )
        elif len(fields) != n:
            raise DataFormatError(
                path, f"{label}: a header line with {n} {sep_shown}-separated fields", line=1, found=head
            )
        text = text[nl + 1 :]
        first = 1
    # Field counts and blank lines are checked here (vectorised), so that every problem gets its line number.
    assert len(sep) == 1 and ord(sep) < 128
    b = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    nl_pos = np.flatnonzero(b == 10)
    n_lines = len(nl_pos)

    def per_line(mask: np.ndarray) -> np.ndarray:
        c = np.cumsum(mask, dtype=np.int64)[nl_pos]
        return np.diff(c, prepend=0)

    seps = per_line(b == ord(sep))
    non_ws = per_line((b != 9) & (b != 10) & (b != 13) & (b != 32))
    blank = non_ws == 0
    bad = (seps != n - 1) & ~blank
    if bad.any():
        r = int(np.argmax(bad))
        start_b = 0 if r == 0 else int(nl_pos[r - 1]) + 1
        ln = b[start_b : int(nl_pos[r])].tobytes().decode("utf-8", "replace").replace(_SUBST_SEP, orig_sep)
        raise DataFormatError(
            path,
            f"{label} with {n} {sep_shown}-separated fields per line",
            line=first + r + 1,
            found=f"{int(seps[r]) + 1} fields: {ln}",
        )
    all_numbers = np.arange(first + 1, first + n_lines + 1, dtype=np.int64)
    if blank.any():
        if drops is not None:
            drops.add("blank_lines", int(blank.sum()))
        lines = text.split("\n")
        text = "\n".join(lines[i] for i in np.flatnonzero(~blank)) + "\n"
        line_no = all_numbers[~blank]
    else:
        line_no = all_numbers
    if len(line_no) == 0:
        raise DataFormatError(path, f"{label} with at least one data line", found="no data lines")
    numeric = set(int_columns) | set(float_columns)

    def parse(all_text: bool) -> pd.DataFrame:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None,
            names=list(columns),
            dtype=str if all_text else {c: str for c in columns if c not in numeric},
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_values=[],
            skip_blank_lines=False,
            lineterminator="\n",
            engine="c",
        )

    df = parse(all_text=False)
    if len(df) != len(line_no):  # pragma: no cover - defensive: the parser must see one row per kept line
        raise DataFormatError(path, f"{label}: one record per line", found=f"{len(df)} records in {len(line_no)} lines")
    fast = all(df[c].dtype.kind == "i" for c in int_columns) and all(
        df[c].dtype.kind in "if" and np.isfinite(df[c].to_numpy(dtype=np.float64)).all() for c in float_columns
    )
    if fast:  # the parser read clean numbers
        for col in int_columns:
            df[col] = df[col].astype(np.int64)
        for col in float_columns:
            df[col] = df[col].astype(np.float64)
    else:  # validate the original text to report the first bad value with its line
        df = parse(all_text=True)
        for col in int_columns:
            df[col] = _to_number(df[col], path, line_no, label, col, integer=True)
        for col in float_columns:
            df[col] = _to_number(df[col], path, line_no, label, col, integer=False)
    for col in columns:
        if col not in numeric:
            df[col] = df[col].astype(object)
    return df


_INT = r"[+-]?\d{1,18}"


def _to_number(s: pd.Series, path: Path, line_no: np.ndarray, label: str, col: str, integer: bool) -> pd.Series:
    """Slow path with line numbers: convert a text column to int64 / float64 or raise on the first bad value."""
    raw = s.astype(object).astype(str).str.strip()
    if integer:
        bad = ~raw.str.fullmatch(_INT).to_numpy(dtype=bool)
        kind = "an integer"
    else:
        vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(vals)
        kind = "a number"
    if bad.any():
        r = int(np.argmax(bad))
        raise DataFormatError(path, f"{label}: {kind} in field {col!r}", line=int(line_no[r]), found=str(s.iloc[r]))
    if integer:
        return pd.Series(raw.map(int).to_numpy(dtype=np.int64), index=s.index)
    return pd.Series(vals, index=s.index)


def _json_loads():
    try:
        import orjson

        return orjson.loads, (orjson.JSONDecodeError,)
    except ImportError:  # pragma: no cover - orjson is optional
        return json.loads, (json.JSONDecodeError,)


def iter_json_lines(
    path: str | os.PathLike, *, encoding: str = "utf-8", what: str = "", desc: str | None = None, quiet: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON-lines file (``.gz`` allowed).

    A line that is not a JSON object raises DataFormatError with its line number.
    """
    path = Path(path)
    label = what or "a JSON-lines file"
    if not path.is_file():
        raise DataFormatError(path, f"{label}: an existing file", found="no such file")
    encoding = check_encoding(encoding)
    loads, errors = _json_loads()
    opener = gzip.open if path.name.endswith(".gz") else open
    size = path.stat().st_size
    try:
        with opener(path, "rb") as raw:
            bar = progress(total=size, desc=desc or f"read {path.name}", unit="B", unit_scale=True, quiet=quiet)
            try:
                for lineno, line in enumerate(raw, start=1):
                    if lineno % 4096 == 0:
                        pos = raw.fileobj.tell() if hasattr(raw, "fileobj") and raw.fileobj is not None else raw.tell()
                        bar.update(pos - bar.n)
                    if not line.strip():
                        continue
                    try:
                        text = line.decode(encoding)
                    except UnicodeDecodeError:
                        raise DataFormatError(
                            path, f"{label} encoded as {encoding}", line=lineno, found=repr(line[:80])
                        ) from None
                    try:
                        obj = loads(text)
                    except errors as e:
                        raise DataFormatError(
                            path, f"{label}: one JSON object per line", line=lineno, found=f"{text.strip()[:120]} ({e})"
                        ) from None
                    if not isinstance(obj, dict):
                        raise DataFormatError(
                            path, f"{label}: one JSON object per line", line=lineno, found=text.strip()[:120]
                        )
                    yield lineno, obj
                bar.update(size - bar.n)
            finally:
                bar.close()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFormatError(path, f"{label}: a readable file", found=str(e)) from None


def load_json_file(path: str | os.PathLike, *, encoding: str = "utf-8", what: str = "") -> Any:
    """Load a whole JSON document; a syntax error is reported with its line."""
    path = Path(path)
    label = what or "a JSON file"
    text = decode_text(read_bytes(path), path, encoding)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"{label}: valid JSON", line=e.lineno, found=e.msg) from None
