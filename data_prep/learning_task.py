#!/usr/bin/env python
"""Thin wrapper: see coars_verl.datasets.learning_task, coars_verl.datasets.cli.main_learning_task and data_prep/README.md."""

import sys

from coars_verl.datasets.cli import main_learning_task

if __name__ == "__main__":
    sys.exit(main_learning_task())
