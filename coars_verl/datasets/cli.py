"""Command-line front ends of the data_prep scripts (shared argparse pieces and error handling).

Every command exits 0 on success, 2 on bad input or usage (the message names the file, the line
and what was expected), 130 on Ctrl-C; no partial output is left behind in any case.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from coars_verl.datasets.download import DownloadError, download
from coars_verl.datasets.errors import DataFormatError
from coars_verl.datasets import loaders
from coars_verl.datasets.loaders import LASTFM_ITEM_POOLS, LASTFM_UNTAGGED_CHOICES, LoadedDataset
from coars_verl.datasets.pipeline import format_summary, run_pipeline
from coars_verl.datasets.protocol import ProtocolConfig


def _ratios(text: str) -> tuple[float, float, float]:
    parts = text.replace("/", ":").split(":")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 8:1:1, got {text!r}") from None
    if len(vals) != 3 or min(vals) < 0 or sum(vals) <= 0:
        raise argparse.ArgumentTypeError(f"expected three non-negative numbers like 8:1:1, got {text!r}")
    return vals  # type: ignore[return-value]


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _pos_int(text: str) -> int:
    v = _nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def add_common_arguments(p: argparse.ArgumentParser, default_core: int = 0) -> None:
    io = p.add_argument_group("input and output")
    io.add_argument(
        "--raw-dir",
        required=True,
        type=Path,
        help="folder with the raw files (or a folder containing the unpacked archive folder)",
    )
    io.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder; replaced atomically (only if empty or written by data_prep before)",
    )
    io.add_argument(
        "--download",
        action="store_true",
        help="first download the official files into --raw-dir (skipped for files already there)",
    )
    io.add_argument("--encoding", default=None, help="text encoding of the raw files (default: the format's own)")
    io.add_argument("--name", default=None, help="dataset name used in data_source (coars/<name>)")
    io.add_argument("--quiet", action="store_true", help="no progress bars and no summary table")
    add_protocol_arguments(p.add_argument_group("protocol (data_prep/README.md, Protocol)"), default_core)


def add_protocol_arguments(group, default_core: int = 0) -> None:
    """One option per :class:`ProtocolConfig` field, generated from the field (help, bounds,
    choices), so that the command line and the protocol never differ."""
    hints = typing.get_type_hints(ProtocolConfig)
    for spec in dataclasses.fields(ProtocolConfig):
        meta = spec.metadata
        default = default_core if spec.name == "core" else spec.default
        text = meta["help"].replace("%", "%%")  # argparse formats help with %
        kwargs: dict[str, Any] = {"default": default, "dest": spec.name, "help": f"{text} (default %(default)s)"}
        kind = hints[spec.name]
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        elif typing.get_origin(kind) is tuple:
            kwargs.update(type=_ratios, metavar="TRAIN:VALID:TEST", help=f"{text} (default 8:1:1)")
        elif kind is int:
            kwargs["type"] = {None: int, 0: _nonneg_int, 1: _pos_int}[meta.get("minimum")]
        elif kind is float:
            kwargs["type"] = _nonneg_float
        group.add_argument(meta.get("flag") or f"--{spec.name.replace('_', '-')}", **kwargs)


def add_recbole_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("RecBole atomic input (--format recbole)")
    g.add_argument(
        "--recbole-name", default=None, help="file stem <name>.inter / .item / .user (default: the only one)"
    )
    g.add_argument("--user-field", default=None)
    g.add_argument("--item-field", default=None)
    g.add_argument("--time-field", default=None)
    g.add_argument("--title-field", default=None)


def load_recbole_from_args(args: argparse.Namespace, dataset_name: str, encoding: str, title_normalizer: str = "clean") -> LoadedDataset:
    """:func:`loaders.load_recbole` with the options of :func:`add_recbole_arguments`."""
    return loaders.load_recbole(
        args.raw_dir,
        name=args.recbole_name,
        dataset_name=dataset_name,
        user_field=args.user_field,
        item_field=args.item_field,
        time_field=args.time_field,
        title_field=args.title_field,
        title_normalizer=title_normalizer,
        encoding=encoding,
    )


def protocol_from_args(args: argparse.Namespace) -> ProtocolConfig:
    values = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(ProtocolConfig)}
    return ProtocolConfig(**{**values, "split_ratios": tuple(values["split_ratios"])})


def _has(raw: Path, *names: str, glob: str | None = None) -> bool:
    dirs = [raw] + (sorted(x for x in raw.iterdir() if x.is_dir()) if raw.is_dir() else [])
    for d in dirs:
        if any((d / n).is_file() for n in names):
            return True
        if glob and any(
            p for p in d.glob(glob) if not any(p.name.endswith(f".{s}.inter") for s in ("train", "valid", "test"))
        ):
            return True
    return False


def detect_format(raw: Path, candidates: Sequence[tuple[str, tuple[str, ...], str | None]], what: str) -> str:
    """First format whose marker files exist in ``raw`` (or a subfolder)."""
    for fmt, names, glob in candidates:
        if _has(raw, *names, glob=glob):
            return fmt
    expected = "; ".join(f"{fmt}: {' or '.join(names + ((glob,) if glob else ()))}" for fmt, names, glob in candidates)
    raise DataFormatError(raw, f"{what} files ({expected})", found="none of them")


def _run(args: argparse.Namespace, load: Callable[[], LoadedDataset], download_key: Callable[[], str] | None) -> int:
    t0 = time.perf_counter()
    try:
        cfg = protocol_from_args(args)
    except ValueError as e:  # option combinations argparse cannot check (e.g. --min-history > --max-history)
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.download:
            if download_key is None:
                raise DownloadError("--download needs a known format (pass --format / --variant)")
            download(download_key(), args.raw_dir, quiet=args.quiet)
        data = load()
        if args.name:
            data.name = args.name
        stats = run_pipeline(data, cfg, args.out, quiet=args.quiet)
    except (DataFormatError, DownloadError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. --out not writable, disk full
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written to --out", file=sys.stderr)
        return 130
    if not args.quiet:
        print(format_summary(stats, args.out))
        print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def _enc(args: argparse.Namespace, default: str) -> str:
    return args.encoding or default


# --------------------------------------------------------------------------------------------


def movielens_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="movielens.py", description="Prepare MovieLens (ml-100k or ml-1m, raw or RecBole atomic) for CoARS/verl."
    )
    p.add_argument(
        "--variant",
        choices=("auto", "ml-100k", "ml-1m"),
        default="auto",
        help="raw release (default: detect from the files: u.data -> ml-100k, ratings.dat -> ml-1m)",
    )
    p.add_argument("--format", choices=("auto", "raw", "recbole"), default="auto")
    add_common_arguments(p)
    add_recbole_arguments(p)
    return p


def main_movielens(argv: Sequence[str] | None = None) -> int:
    args = movielens_parser().parse_args(argv)

    def resolve() -> tuple[str, str]:
        fmt, variant = args.format, args.variant
        if fmt == "auto":
            if variant != "auto" and args.download:
                fmt = "raw"
            else:
                fmt = detect_format(
                    args.raw_dir, [("raw", ("u.data", "ratings.dat"), None), ("recbole", (), "*.inter")], "MovieLens"
                )
        if fmt == "raw" and variant == "auto":
            variant = detect_format(
                args.raw_dir, [("ml-100k", ("u.data",), None), ("ml-1m", ("ratings.dat",), None)], "MovieLens raw"
            )
        return fmt, variant

    def load() -> LoadedDataset:
        fmt, variant = resolve()
        if fmt == "recbole":
            data = load_recbole_from_args(args, "movielens", _enc(args, "utf-8"), title_normalizer="movielens")
            stem = data.files[0][: -len(".inter")].lower()
            v = variant if variant != "auto" else stem
            data.name = {"ml-100k": "movielens-100k", "ml-1m": "movielens-1m"}.get(v, "movielens")
            return data
        if variant == "ml-100k":
            return loaders.load_movielens_100k(args.raw_dir, encoding=_enc(args, "latin-1"))
        return loaders.load_movielens_1m(args.raw_dir, encoding=_enc(args, "latin-1"))

    def key() -> str:
        if args.variant == "auto":
            raise DownloadError("--download needs --variant ml-100k or --variant ml-1m")
        if args.format == "recbole":
            raise DownloadError("--download fetches the GroupLens archives (raw format), not RecBole files")
        return args.variant

    return _run(args, load, key)


def lastfm_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lastfm.py", description="Prepare LastFM hetrec2011-lastfm-2k (raw or RecBole atomic) for CoARS/verl."
    )
    p.add_argument("--format", choices=("auto", "raw", "recbole"), default="auto")
    p.add_argument(
        "--untagged",
        choices=LASTFM_UNTAGGED_CHOICES,
        default="after",
        help="where artists the user listened to but never tagged go in the time order: after the "
        "tagged ones (default), before them, or out of the sequence (drop); see the README",
    )
    p.add_argument(
        "--item-pool",
        choices=LASTFM_ITEM_POOLS,
        default="all",
        help="all artists of user_artists.dat (default), or only artists some user tagged (a smaller, LLaRA-like pool)",
    )
    add_common_arguments(p)
    add_recbole_arguments(p)
    return p


def main_lastfm(argv: Sequence[str] | None = None) -> int:
    args = lastfm_parser().parse_args(argv)

    def load() -> LoadedDataset:
        fmt = args.format
        if fmt == "auto":
            fmt = detect_format(
                args.raw_dir, [("raw", ("user_artists.dat",), None), ("recbole", (), "*.inter")], "LastFM"
            )
        if fmt == "recbole":
            return load_recbole_from_args(args, "lastfm", _enc(args, "utf-8"))
        return loaders.load_lastfm(args.raw_dir, untagged=args.untagged, encoding=_enc(args, "utf-8"), item_pool=args.item_pool)

    def key() -> str:
        if args.format == "recbole":
            raise DownloadError("--download fetches the GroupLens archive (raw format), not RecBole files")
        return "lastfm"

    return _run(args, load, key)


INSTRUMENT_FORMATS = (
    ("amazon2018", ("Musical_Instruments_5.json", "Musical_Instruments_5.json.gz"), None),
    ("amazon2023", ("Musical_Instruments.jsonl", "Musical_Instruments.jsonl.gz"), None),
    ("lcrec", (), "*.inter.json"),
    ("recbole", (), "*.inter"),
)


def instruments_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="instruments.py",
        description="Prepare Amazon Musical Instruments (Amazon Reviews 2018 / 2023, LC-Rec processed, or RecBole "
        "atomic) for CoARS/verl.",
    )
    p.add_argument("--format", choices=("auto",) + tuple(f for f, _, _ in INSTRUMENT_FORMATS), default="auto")
    p.add_argument("--lcrec-name", default="Instruments", help="LC-Rec file stem (default %(default)s)")
    add_common_arguments(p, default_core=5)
    add_recbole_arguments(p)
    return p


def main_instruments(argv: Sequence[str] | None = None) -> int:
    args = instruments_parser().parse_args(argv)

    def load() -> LoadedDataset:
        fmt = args.format
        if fmt == "auto":
            fmt = detect_format(args.raw_dir, INSTRUMENT_FORMATS, "Amazon Musical Instruments")
        enc = _enc(args, "utf-8")
        if fmt == "amazon2018":
            return loaders.load_amazon2018(args.raw_dir, encoding=enc, quiet=args.quiet)
        if fmt == "amazon2023":
            return loaders.load_amazon2023(args.raw_dir, encoding=enc, quiet=args.quiet)
        if fmt == "lcrec":
            return loaders.load_lcrec(args.raw_dir, name=args.lcrec_name, encoding=enc)
        return load_recbole_from_args(args, "instruments", enc)

    def key() -> str:
        if args.format == "auto":
            raise DownloadError("--download needs --format amazon2018 or --format amazon2023")
        return args.format

    return _run(args, load, key)


def recbole_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recbole_atomic.py", description="Prepare any RecBole atomic dataset (.inter, .item, optional .user)."
    )
    p.add_argument(
        "--title-normalizer",
        choices=("clean", "movielens"),
        default="clean",
        help="'movielens' also moves trailing articles and strips years (default %(default)s)",
    )
    add_common_arguments(p)
    add_recbole_arguments(p)
    return p


def main_recbole(argv: Sequence[str] | None = None) -> int:
    args = recbole_parser().parse_args(argv)

    def load() -> LoadedDataset:
        data = load_recbole_from_args(args, "recbole", _enc(args, "utf-8"), title_normalizer=args.title_normalizer)
        if not args.name:
            data.name = data.files[0][: -len(".inter")].lower()
        return data

    return _run(args, load, None)


def _add_config_options(parser: argparse.ArgumentParser, config_cls) -> None:
    """One ``--option`` per field of a config dataclass (generated, so that the two never differ)."""
    from dataclasses import fields

    for field in fields(config_cls):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=_nonneg_int, default=field.default, help=f"default {field.default}")


def _config_from_args(config_cls, args: argparse.Namespace):
    from dataclasses import fields

    return config_cls(**{field.name: getattr(args, field.name) for field in fields(config_cls)})


def _prepare_and_write(args: argparse.Namespace, prepare: Callable[[], Any]) -> int:
    """Run ``prepare`` (-> a Prepared), write it to ``args.out``; errors print one line and exit 2."""
    from coars_verl.datasets.pipeline import write_outputs

    t0 = time.perf_counter()
    try:
        stats = write_outputs(prepare(), args.out, quiet=args.quiet)
    except (ValueError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(format_summary(stats, args.out))
        print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def learning_task_parser() -> argparse.ArgumentParser:
    from coars_verl.datasets.learning_task import LearningTaskConfig

    parser = argparse.ArgumentParser(
        prog="data_prep/learning_task.py",
        description="Generate the controlled learning task (a check that training learns, not a benchmark).",
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--quiet", action="store_true")
    _add_config_options(parser, LearningTaskConfig)
    return parser


def main_learning_task(argv: Sequence[str] | None = None) -> int:
    from coars_verl.datasets.learning_task import LearningTaskConfig, generate

    args = learning_task_parser().parse_args(argv)
    return _prepare_and_write(args, lambda: generate(_config_from_args(LearningTaskConfig, args)))


def llara_parser() -> argparse.ArgumentParser:
    from coars_verl.datasets.llara import LlaraImportConfig

    parser = argparse.ArgumentParser(
        prog="data_prep/llara.py",
        description="Import a LLaRA/AFL benchmark folder as it ships (their splits, their candidate draw).",
    )
    parser.add_argument("--raw-dir", required=True, help="folder with train_data.df, Val_data.df, Test_data.df, id2name.txt or u.item")
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--user-sim", help="AFL's user-simulation users (lastfm_ab/test_llara.pkl); without it no user-simulation set")
    parser.add_argument("--name", help="dataset name (default: <folder name>_llara)")
    parser.add_argument("--quiet", action="store_true")
    _add_config_options(parser, LlaraImportConfig)
    return parser


def main_llara(argv: Sequence[str] | None = None) -> int:
    from coars_verl.datasets.llara import LlaraImportConfig, import_llara

    args = llara_parser().parse_args(argv)
    return _prepare_and_write(
        args, lambda: import_llara(args.raw_dir, _config_from_args(LlaraImportConfig, args), user_sim_file=args.user_sim, name=args.name)
    )
