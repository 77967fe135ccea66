"""Single-turn rows for the RecZero-style baseline, from a folder data_prep wrote (pure pandas; no verl).

The same samples as the dialogue recipes (every split file, row for row: user, history, candidates,
target), with the recommender's first prompt rendered by the dialogue's own builder from the
RecZero templates (``recipes/prompts/reczero.yaml``), so that the evaluation, given the same
templates and one turn, scores exactly the prompt the model was trained on. The rows have no
``agent_name``: verl's own single-turn agent loop plays them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from coars_verl.constants import EI_CANDIDATE_TITLES, EI_HISTORY_TITLES
from coars_verl.dialogue.prompts import PromptTemplates, load_prompt_overrides, recommender_initial_messages
from coars_verl.recipes import RECIPES_DIR

RECZERO_PROMPTS = RECIPES_DIR / "prompts" / "reczero.yaml"
SPLIT_FILES = ("train.parquet", "valid.parquet", "test.parquet")
DATA_SOURCE_PREFIX = "reczero/"


def reczero_frame(frame: pd.DataFrame, templates: PromptTemplates, numbered_candidates: bool = True, source: str = "") -> pd.DataFrame:
    """The rows of one split file as single-turn verl rows (prompt re-rendered, the rest kept)."""
    missing = [c for c in ("extra_info", "reward_model", "data_source") if c not in frame.columns]
    if missing:
        raise ValueError(f"{source or 'frame'}: missing column(s) {missing}; expected a split file written by data_prep")
    rows = []
    for position, row in enumerate(frame.to_dict("records")):
        info = dict(row["extra_info"])
        try:
            prompt = recommender_initial_messages(list(info[EI_HISTORY_TITLES]), list(info[EI_CANDIDATE_TITLES]), templates,
                                                  numbered_candidates)
        except KeyError as exc:
            raise ValueError(f"{source or 'frame'} row {position}: extra_info lacks {exc}") from exc
        rows.append({
            "data_source": DATA_SOURCE_PREFIX + str(row["data_source"]),
            "prompt": prompt,
            "ability": "recommendation",
            "reward_model": row["reward_model"],
            "extra_info": info,
        })
    return pd.DataFrame(rows)


def write_reczero(data_dir: str | Path, out_dir: Optional[str | Path] = None, prompts: Optional[Mapping[str, str]] = None,
                  numbered_candidates: bool = True) -> dict[str, int]:
    """Write ``out_dir`` (default ``data_dir/reczero``) with one file per split file of ``data_dir``;
    returns rows per file. ``prompts``: template overrides (default: ``recipes/prompts/reczero.yaml``)."""
    data_dir = Path(data_dir)
    out_dir = Path(out_dir) if out_dir is not None else data_dir / "reczero"
    templates = PromptTemplates.from_overrides(prompts if prompts is not None else load_prompt_overrides(RECZERO_PROMPTS))
    present = [name for name in SPLIT_FILES if (data_dir / name).exists()]
    if not present:
        raise FileNotFoundError(f"{data_dir}: none of {list(SPLIT_FILES)}; run a data_prep script first")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in present:
        frame = reczero_frame(pd.read_parquet(data_dir / name), templates, numbered_candidates, source=str(data_dir / name))
        frame.to_parquet(out_dir / name)
        written[name] = len(frame)
    return written
