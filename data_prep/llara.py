#!/usr/bin/env python
"""Thin wrapper: see coars_verl.datasets.llara, coars_verl.datasets.cli.main_llara and data_prep/README.md."""

import sys

from coars_verl.datasets.cli import main_llara

if __name__ == "__main__":
    sys.exit(main_llara())
