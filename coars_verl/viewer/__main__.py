"""``python -m coars_verl.viewer RUN_DIR [--out FILE.html]``: write the viewer page of a run.

RUN_DIR: a training run (``metrics.jsonl`` and the credit dump of ``trainer.rollout_data_dir`` in
``RUN_DIR/credit`` or ``RUN_DIR/*/credit``) or an evaluation folder (``dialogue.jsonl``). The page is
one HTML file (inline CSS, SVG and a little JavaScript): it opens from disk, without a server or
network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coars_verl.viewer.build import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coars_verl.viewer", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a training run folder or an evaluation folder")
    parser.add_argument("--out", type=Path, help="the HTML file to write (default RUN_DIR/viewer.html)")
    args = parser.parse_args(argv)
    try:
        out = build(args.run_dir, args.out)
    except (FileNotFoundError, ValueError) as error:
        print(f"viewer: {error}", file=sys.stderr)
        return 2
    print(f"viewer: {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
