"""Dataset preparation for CoARS (coars-method.md sections 2, 5, 6): loaders of the raw formats,
the LLaRA/AFL-style protocol, and deterministic, atomic writers of verl-ready parquet files.

Free of torch / verl imports so that a preparation starts fast. Command-line front ends are the
``data_prep/*.py`` scripts (``coars_verl.datasets.cli``).
"""

from coars_verl.datasets.errors import DataFormatError, DropCounter
from coars_verl.datasets.loaders import (
    LoadedDataset,
    load_amazon2018,
    load_amazon2023,
    load_lastfm,
    load_lcrec,
    load_movielens_1m,
    load_movielens_100k,
    load_recbole,
)
from coars_verl.datasets.pipeline import OUTPUT_FILES, format_summary, run_pipeline, write_outputs
from coars_verl.datasets.protocol import Prepared, ProtocolConfig, prepare

__all__ = [
    "DataFormatError",
    "DropCounter",
    "LoadedDataset",
    "load_amazon2018",
    "load_amazon2023",
    "load_lastfm",
    "load_lcrec",
    "load_movielens_1m",
    "load_movielens_100k",
    "load_recbole",
    "OUTPUT_FILES",
    "format_summary",
    "run_pipeline",
    "write_outputs",
    "Prepared",
    "ProtocolConfig",
    "prepare",
]
