#!/usr/bin/env python
"""Single-turn rows for the RecZero-style baseline from a prepared folder: see coars_verl.datasets.reczero and data_prep/README.md."""

import argparse
import sys

from coars_verl.datasets.reczero import RECZERO_PROMPTS, write_reczero
from coars_verl.dialogue.prompts import load_prompt_overrides


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="data_prep/reczero.py", description=__doc__)
    parser.add_argument("--data", required=True, help="a folder written by a data_prep script (train/valid/test.parquet)")
    parser.add_argument("--out", default=None, help="output folder (default: DATA/reczero)")
    parser.add_argument("--prompts", default=str(RECZERO_PROMPTS), help="prompt template overrides (coars.prompts.*)")
    parser.add_argument("--numbered-candidates", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    try:
        written = write_reczero(args.data, args.out, load_prompt_overrides(args.prompts), args.numbered_candidates)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, rows in written.items():
        print(f"{name}: {rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
