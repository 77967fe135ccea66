"""``python -m coars_verl.eval.table results/*.json [--out table.md]``: one markdown comparison table.

Arguments are result JSON files of the evaluation tool or the baselines, or folders holding a
``results.json``; rows come in the order given. Ratios are shown in percent; ``-`` marks a metric
that a method does not have (e.g. user simulation for popularity); "(partial)" marks an
evaluation that has not finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from coars_verl.eval.report import load_result, markdown_table
from coars_verl.eval.store import write_text_atomic


def result_paths(arguments: list[str]) -> list[Path]:
    paths = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            path = path / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{argument}: no result file")
        paths.append(path)
    return paths


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coars_verl.eval.table", description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="result JSON files or evaluation folders")
    p.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = p.parse_args(argv)
    try:
        results = [load_result(path) for path in result_paths(args.results)]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(results)
    print(table, end="")
    if args.out:
        write_text_atomic(Path(args.out), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
