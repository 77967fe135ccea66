#!/usr/bin/env python
"""Thin wrapper: see coars_verl.datasets.cli.main_recbole and data_prep/README.md."""

import sys

from coars_verl.datasets.cli import main_recbole

if __name__ == "__main__":
    sys.exit(main_recbole())
