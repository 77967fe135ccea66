"""A dialogue viewer: one self-contained HTML page of a training run's token-level credit (the
credit dump of :mod:`coars_verl.credit_dump`, verl's ``metrics.jsonl``) or of an evaluation's
``dialogue.jsonl``. ``python -m coars_verl.viewer RUN_DIR [--out FILE.html]``."""

from coars_verl.viewer.build import build, load_page, render

__all__ = ["build", "load_page", "render"]
