"""Reading the prepared evaluation files (data_prep's schema) and choosing the samples to score.

Selection is deterministic and shared by the evaluation tool and the baselines, so that every
method is scored on the same samples:

* dialogue samples: the rows of ``<split>.parquet`` in file order; ``one_per_user`` keeps each
  user's last window (the row with the highest ``index``: data_prep writes a user's windows in
  time order), LLaRA style; samples without a user id are all kept, with a warning (they cannot
  be grouped); then ``max_samples`` keeps the first N;
* user-simulation users: the rows of ``user_sim_<split>.parquet`` in file order, the first
  ``max_users`` of them.

A sample's key is ``"<split>/<index>"`` (``extra_info.split`` / ``extra_info.index``): it names
the sample in the per-sample results, so a resumed run knows what is done.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from coars_verl.constants import EI_CANDIDATE_ITEM_IDS, EI_CANDIDATE_TITLES, EI_INDEX, EI_SPLIT, EI_USER_ID


@dataclass(frozen=True)
class DialogueRow:
    key: str
    user_id: str
    extra_info: dict[str, Any]

    @property
    def candidate_titles(self) -> list[str]:
        return list(self.extra_info[EI_CANDIDATE_TITLES])

    @property
    def candidate_item_ids(self) -> list[str]:
        return [str(i) for i in self.extra_info.get(EI_CANDIDATE_ITEM_IDS) or []]


@dataclass(frozen=True)
class UserSimRow:
    key: str
    user_id: str
    history_titles: tuple[str, ...]
    item_titles: tuple[str, ...]
    item_ids: tuple[str, ...]
    labels: tuple[bool, ...]


TASK_DIALOGUE = "dialogue"
TASK_USER_SIM = "user_sim"
TASKS = (TASK_DIALOGUE, TASK_USER_SIM)
"""What an evaluation scores: recommendation dialogues, user-simulation judgments."""


def check_tasks(tasks) -> None:
    """ValueError unless ``tasks`` is a non-empty selection of :data:`TASKS`."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise ValueError(f"tasks: unknown {unknown}; expected some of {TASKS}")


def dialogue_file(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}.parquet"


def user_sim_file(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"user_sim_{split}.parquet"


def items_file(data_dir: str | Path) -> Path:
    return Path(data_dir) / "items.parquet"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """numpy arrays / scalars from parquet as plain lists and Python scalars (JSON-safe)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _read(path: Path, columns: list[str]):
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (expected a folder prepared by data_prep)")
    return pd.read_parquet(path, columns=columns)


def load_dialogue_rows(
    data_dir: str | Path, split: str = "test", max_samples: Optional[int] = None, one_per_user: bool = False
) -> list[DialogueRow]:
    """The dialogue samples to evaluate, in a fixed order (see the module docstring)."""
    frame = _read(dialogue_file(data_dir, split), ["extra_info"])
    rows = []
    for position, extra_info in enumerate(frame["extra_info"]):
        info = _plain(extra_info)
        row_split = str(info.get(EI_SPLIT) or split)
        index = info.get(EI_INDEX)
        index = int(index) if index is not None else position
        rows.append(DialogueRow(f"{row_split}/{index}", str(info.get(EI_USER_ID, "")), info))
    if one_per_user:
        anonymous = sum(1 for row in rows if not row.user_id.strip())
        if anonymous:
            # a missing id is no user: grouping on it would keep one sample of all of them (LLaRA's
            # files have no user ids), so those samples are all kept
            warnings.warn(
                f"{dialogue_file(data_dir, split)}: {anonymous} of {len(rows)} samples have no user_id; "
                "--one-per-user keeps all of them (it cannot tell their users apart)",
                stacklevel=2,
            )
        last: dict[str, DialogueRow] = {}
        order: list[str] = []
        for position, row in enumerate(rows):
            if not row.user_id.strip():
                order.append(f"\0anonymous/{position}")
                last[order[-1]] = row
            elif row.user_id not in last:
                order.append(row.user_id)
                last[row.user_id] = row
            elif _index_of(row) >= _index_of(last[row.user_id]):
                last[row.user_id] = row
        rows = [last[user] for user in order]
    keys = [row.key for row in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{dialogue_file(data_dir, split)}: duplicate (split, index) keys in extra_info")
    return rows[:max_samples] if max_samples is not None else rows


def _index_of(row: DialogueRow) -> int:
    return int(row.key.rsplit("/", 1)[1])


def load_user_sim_rows(data_dir: str | Path, split: str = "test", max_users: Optional[int] = None) -> list[UserSimRow]:
    columns = ["split", "index", "user_id", "history_titles", "item_titles", "item_ids", "labels"]
    frame = _read(user_sim_file(data_dir, split), columns)
    rows = []
    for record in frame.to_dict("records"):
        record = _plain(record)
        titles, ids, labels = record["item_titles"], record["item_ids"], record["labels"]
        if not (len(titles) == len(ids) == len(labels)):
            raise ValueError(f"user_sim_{split}.parquet, user {record['user_id']}: item_titles, item_ids, labels differ in length")
        rows.append(
            UserSimRow(
                key=f"{record['split'] or split}/{int(record['index'])}",
                user_id=str(record["user_id"]),
                history_titles=tuple(record["history_titles"]),
                item_titles=tuple(titles),
                item_ids=tuple(str(i) for i in ids),
                labels=tuple(bool(x) for x in labels),
            )
        )
    return rows[:max_users] if max_users is not None else rows


def load_train_interactions(data_dir: str | Path) -> dict[str, int]:
    """item id -> number of interactions in the train split (items.parquet ``train_interactions``)."""
    frame = _read(items_file(data_dir), ["item_id", "train_interactions"])
    return {str(item): int(count) for item, count in zip(frame["item_id"], frame["train_interactions"])}
