"""``--download``: fetch the official archives into the raw folder (urllib, no extra packages)."""

from __future__ import annotations

import contextlib
import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from coars_verl.datasets.errors import DataFormatError
from coars_verl.datasets.progress import progress


class DownloadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Download:
    url: str
    filename: str
    extract: bool = False
    """Unzip into the raw folder after downloading."""
    present_if: tuple[str, ...] = ()
    """Skip the download when one of these files is already found (in raw dir or a subfolder)."""


DOWNLOADS: dict[str, tuple[Download, ...]] = {
    "ml-100k": (
        Download("https://files.grouplens.org/datasets/movielens/ml-100k.zip", "ml-100k.zip", True, ("u.data",)),
    ),
    "ml-1m": (
        Download("https://files.grouplens.org/datasets/movielens/ml-1m.zip", "ml-1m.zip", True, ("ratings.dat",)),
    ),
    "lastfm": (
        Download(
            "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
            "hetrec2011-lastfm-2k.zip",
            True,
            ("user_artists.dat",),
        ),
    ),
    "amazon2018": (
        Download(
            "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/Musical_Instruments_5.json.gz",
            "Musical_Instruments_5.json.gz",
            False,
            ("Musical_Instruments_5.json", "Musical_Instruments_5.json.gz"),
        ),
        Download(
            "https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2/meta_Musical_Instruments.json.gz",
            "meta_Musical_Instruments.json.gz",
            False,
            ("meta_Musical_Instruments.json", "meta_Musical_Instruments.json.gz"),
        ),
    ),
    "amazon2023": (
        Download(
            "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/review_categories/"
            "Musical_Instruments.jsonl.gz",
            "Musical_Instruments.jsonl.gz",
            False,
            ("Musical_Instruments.jsonl", "Musical_Instruments.jsonl.gz"),
        ),
        Download(
            "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/meta_categories/"
            "meta_Musical_Instruments.jsonl.gz",
            "meta_Musical_Instruments.jsonl.gz",
            False,
            ("meta_Musical_Instruments.jsonl", "meta_Musical_Instruments.jsonl.gz"),
        ),
    ),
}

MANUAL_SOURCES: dict[str, str] = {
    "lcrec": "the LC-Rec repository (https://github.com/RUCAIBox/LC-Rec) links its processed data; "
    "download Instruments.inter.json and Instruments.item.json by hand",
    "recbole": "RecBole's dataset collection (https://github.com/RUCAIBox/RecSysDatasets) links the atomic "
    "files; download and unpack them by hand",
}


def _present(raw_dir: Path, names: Sequence[str]) -> bool:
    for name in names:
        if (raw_dir / name).is_file():
            return True
        if raw_dir.is_dir() and any((sub / name).is_file() for sub in raw_dir.iterdir() if sub.is_dir()):
            return True
    return False


def _fetch(url: str, dest: Path, quiet: bool, timeout: float) -> None:
    part = dest.with_name(dest.name + ".part")
    try:
        with contextlib.closing(urllib.request.urlopen(url, timeout=timeout)) as resp, open(part, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = progress(total=total, desc=f"download {dest.name}", unit="B", unit_scale=True, quiet=quiet)
            try:
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
        os.replace(part, dest)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        if isinstance(e, (OSError, ValueError)):
            raise DownloadError(f"download of {url} failed: {e}") from None
        raise


def _safe_extract(zip_path: Path, raw_dir: Path) -> None:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            root = raw_dir.resolve()
            for m in zf.infolist():
                target = (raw_dir / m.filename).resolve()
                if not str(target).startswith(str(root) + os.sep) and target != root:
                    raise DataFormatError(
                        zip_path, "a zip archive whose members stay inside the raw folder", found=m.filename
                    )
            zf.extractall(raw_dir)
    except zipfile.BadZipFile as e:
        raise DataFormatError(zip_path, "a zip archive", found=str(e)) from None


def download(key: str, raw_dir: str | os.PathLike, quiet: bool = False, timeout: float = 60.0) -> list[Path]:
    """Download (and unzip) the official files for ``key`` into ``raw_dir``; files already present are
    not downloaded again. Returns the paths written."""
    if key not in DOWNLOADS:
        hint = MANUAL_SOURCES.get(key, "no official download is known")
        raise DownloadError(f"--download is not available for {key!r}: {hint}")
    raw = Path(raw_dir)
    raw.mkdir(parents=True, exist_ok=True)
    written = []
    for d in DOWNLOADS[key]:
        if d.present_if and _present(raw, d.present_if):
            continue
        dest = raw / d.filename
        if not dest.is_file():
            _fetch(d.url, dest, quiet, timeout)
        written.append(dest)
        if d.extract:
            _safe_extract(dest, raw)
    return written
