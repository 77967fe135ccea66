"""Import of the LLaRA / AFL benchmark folders as they ship, with their own splits and candidate draw.

CoARS is compared on the data protocol of LLaRA (github ljy0ustc/LLaRA) and AFL (github
Lanyu0303/AFL). Their ready-made folders hold:

* ``train_data.df``, ``Val_data.df``, ``Test_data.df``: pandas pickles with ``seq`` (the last
  items, padded to 10 with the padding id), ``len_seq`` and ``next`` (the target). LastFM ids are
  ints padded with the item count (4606); MovieLens entries are ``(id, rating)`` tuples padded with
  ``(1682, 0)``;
* the titles: ``id2name.txt`` (``id::name`` lines; LastFM, Steam) or MovieLens' ``u.item``
  (``id - 1``, the title without its year, a trailing article moved to the front, as LLaRA reads it);
* ``data_statis.df``: ``seq_size`` and ``item_num`` (the padding id);
* AFL's user-simulation users, ``lastfm_ab/test_llara.pkl``: a list of
  ``{user_id, artist_list, full_list}``.

The candidates are drawn exactly as their loaders draw them (LLaRA ``data/lastfm_data.py``
``negative_sampling``; AFL ``dataset/lastfm_dataset.py``, run by ``afl/evaluate_rec.py`` with
``random.seed(303)`` once and the test samples in order)::

    canset = [i for i in item ids in title-file order if i not in history and i != target]
    candidates = rng.sample(canset, C - 1) + [target]; rng.shuffle(candidates)

with one ``random.Random(seed)`` stream per split, walked in row order after LLaRA's
``len_seq >= 3`` filter. With seed 303 the test candidates are AFL's own. (LLaRA's published
runs drew inside 8 DataLoader workers seeded from torch's RNG: not reproducible outside their
environment.) The user-simulation set follows AFL's ``dataset/lastfmAB_dataset.py``: per user,
the history is the first ``len - res_num`` items, the liked items the next
``a / (a + b) * eval_cans`` of them, the not-liked ``b / (a + b) * eval_cans`` items drawn from
outside the user's full list and outside the training candidates drawn just before on the same
stream.

LLaRA's rows carry no user id, so the samples' ``user_id`` is empty: nothing may group them by
user (the evaluation's one-per-user selection refuses; the dialogue memory ignores them).
"""

from __future__ import annotations

import pickle
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from coars_verl.datasets.errors import DataFormatError, DropCounter
from coars_verl.datasets.protocol import SPLITS, Prepared, ProtocolConfig, SplitSamples, UserSimSet
from coars_verl.datasets.titles import disambiguate_titles


FORMAT = "llara"
SPLIT_FILES = {"train": "train_data.df", "valid": "Val_data.df", "test": "Test_data.df"}
TITLE_FILES = ("id2name.txt", "u.item")
LLARA_MIN_LEN_SEQ = 3
PADDING_REMOVALS = 10
"""LLaRA's ``remove_padding`` removes the padding id at most this many times (the padded length)."""


@dataclass(frozen=True)
class LlaraImportConfig:
    seed: int = 303
    """AFL's scripts' seed (``SEED=303``); each split's draw starts a fresh ``random.Random(seed)``."""
    num_candidates: int = 20
    sim_res_num: int = 10
    """User simulation: items after the history (AFL ``res_num``)."""
    sim_a_ratio: int = 1
    """User simulation: liked : not-liked is a : b (AFL ``a_ratio``, ``b_ratio``)."""
    sim_b_ratio: int = 1
    sim_eval_cans: int = 20
    """User simulation: items judged per user (AFL ``eval_cans_num``)."""
    sim_train_cans: int = 20
    """User simulation: candidates of the user's training sample, drawn first on the same stream (AFL ``train_cans_num``)."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if spec.name == "seed" else 1):
                raise ValueError(f"llara import: {spec.name} must be an integer >= {0 if spec.name == 'seed' else 1}, got {value!r}")
        if self.num_candidates < 2:
            raise ValueError(f"llara import: num_candidates must be >= 2, got {self.num_candidates}")

    def sim_counts(self) -> tuple[int, int]:
        """(liked, not liked) items per user, as AFL computes them (``int`` truncation)."""
        total = self.sim_a_ratio + self.sim_b_ratio
        return int(self.sim_a_ratio / total * self.sim_eval_cans), int(self.sim_b_ratio / total * self.sim_eval_cans)


def draw_candidates(rng: random.Random, pool: Sequence[int], history: Sequence[int], target: int, num: int) -> list[int]:
    """LLaRA/AFL ``negative_sampling``: ``num - 1`` items of ``pool`` (in its order) that are neither
    in ``history`` nor the target, then the target, shuffled. Consumes ``rng`` exactly as they do."""
    seen = set(history)
    canset = [i for i in pool if i not in seen and i != target]
    candidates = rng.sample(canset, num - 1) + [target]
    rng.shuffle(candidates)
    return candidates


def _movielens_title(raw: str) -> str:
    """LLaRA's ``get_mv_title(title[:-7])``: the year cut, ", The" / ", A" / ", An" moved to the front."""
    title = raw[:-7]
    for suffix in (", The", ", A", ", An"):
        if suffix in title:
            return suffix[2:] + " " + title.replace(suffix, "")
    return title


def read_titles(raw_dir: Path) -> tuple[dict[int, str], Path]:
    """Item id -> title in file order (the order LLaRA's candidate pool has), and the file read."""
    for name in TITLE_FILES:
        path = raw_dir / name
        if path.is_file():
            break
    else:
        raise DataFormatError(raw_dir, f"a title file: one of {', '.join(TITLE_FILES)}")
    titles: dict[int, str] = {}
    text = path.read_text(encoding="utf-8" if name == "id2name.txt" else "ISO-8859-1")
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        parts = line.split("::", 1) if name == "id2name.txt" else line.split("|")
        if len(parts) < 2 or not parts[0].strip().lstrip("-").isdigit():
            raise DataFormatError(path, "'<int id>::<name>'" if name == "id2name.txt" else "'<int id>|<title>|...'", line_no, line)
        item = int(parts[0]) if name == "id2name.txt" else int(parts[0]) - 1
        if item in titles:
            raise DataFormatError(path, "each item id once", line_no, line)
        titles[item] = parts[1].strip() if name == "id2name.txt" else _movielens_title(parts[1])
    if not titles:
        raise DataFormatError(path, "at least one item")
    return titles, path


def _padding_id(raw_dir: Path, titles: dict[int, str]) -> int:
    path = raw_dir / "data_statis.df"
    if not path.is_file():
        return max(titles) + 1
    stats = _read_pickle(path, "a pandas pickle with column 'item_num'")
    if not isinstance(stats, pd.DataFrame) or "item_num" not in stats.columns or stats.empty:
        raise DataFormatError(path, "a DataFrame with column 'item_num'")
    return int(stats["item_num"].iloc[0])


def _read_pickle(path: Path, expected: str) -> Any:
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise DataFormatError(path, expected, found=f"{type(exc).__name__}: {exc}") from exc


def _item(value: Any, path: Path, row: int, column: str) -> int:
    """An item id from an int (LastFM) or an ``(id, rating)`` tuple (MovieLens)."""
    if isinstance(value, (tuple, list)) and len(value) >= 1:
        value = value[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DataFormatError(path, f"column {column!r} of row {row}: an int item id or an (id, rating) tuple", found=repr(value))
    return int(value)


def _unpadded(seq: list[int], pad: int) -> list[int]:
    """LLaRA's ``remove_padding``: the first ``PADDING_REMOVALS`` occurrences of the padding id removed."""
    out = list(seq)
    for _ in range(PADDING_REMOVALS):
        if pad not in out:
            break
        out.remove(pad)
    return out


@dataclass
class _Rows:
    histories: list[list[int]]
    targets: list[int]


def _read_split(path: Path, pad: int, titles: dict[int, str]) -> tuple[_Rows, int]:
    """The rows LLaRA keeps (``len_seq >= 3``), in file order; and how many it drops."""
    frame = _read_pickle(path, "a pandas pickle of a DataFrame with columns seq, len_seq, next")
    if not isinstance(frame, pd.DataFrame) or not {"seq", "len_seq", "next"} <= set(frame.columns):
        found = f"columns {list(frame.columns)}" if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise DataFormatError(path, "a DataFrame with columns seq, len_seq, next", found=found)
    rows = _Rows([], [])
    kept = frame[frame["len_seq"] >= LLARA_MIN_LEN_SEQ]
    for row, (seq, target) in zip(kept.index.tolist(), zip(kept["seq"].tolist(), kept["next"].tolist())):
        if not isinstance(seq, (list, tuple)):
            raise DataFormatError(path, f"column 'seq' of row {row}: a list of item ids", found=repr(seq))
        history = _unpadded([_item(v, path, row, "seq") for v in seq], pad)
        target_id = _item(target, path, row, "next")
        unknown = [i for i in history + [target_id] if i not in titles]
        if unknown:
            raise DataFormatError(path, f"row {row}: item ids present in the title file", found=str(unknown[:5]))
        rows.histories.append(history)
        rows.targets.append(target_id)
    return rows, int(len(frame) - len(kept))


def _flatten(groups: list[list[int]], index_of: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row lists of item ids -> ``(offsets (N + 1,), flat item indices)``, the layout of :mod:`protocol`."""
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
    return offsets, np.array([index_of[i] for g in groups for i in g], dtype=np.int64)


def _user_sim(path: Path, pool: list[int], titles: dict[int, str], cfg: LlaraImportConfig, index_of: dict[int, int],
              first_user: int) -> tuple[UserSimSet, list[str]]:
    """AFL's ``lastfmAB_dataset``: per user the training candidates (drawn only to advance the
    stream as AFL does), then the judged items."""
    users = _read_pickle(path, "a pickled list of {user_id, artist_list, full_list} dicts")
    if not isinstance(users, list):
        raise DataFormatError(path, "a pickled list of {user_id, artist_list, full_list} dicts", found=type(users).__name__)
    liked_n, fake_n = cfg.sim_counts()
    rng = random.Random(cfg.seed)
    hist, pos, neg, judge, labels, user_ids = [], [], [], [], [], []
    for k, user in enumerate(users):
        if not isinstance(user, dict) or not {"user_id", "artist_list", "full_list"} <= set(user):
            raise DataFormatError(path, f"entry {k}: a dict with user_id, artist_list, full_list", found=repr(user)[:200])
        items, full = [int(i) for i in user["artist_list"]], {int(i) for i in user["full_list"]}
        init = len(items) - cfg.sim_res_num
        if init < 1 or init + liked_n > len(items):
            raise DataFormatError(path, f"entry {k}: at least {cfg.sim_res_num + 1} items in artist_list and {liked_n} liked after the history",
                                  found=f"{len(items)} items")
        unknown = [i for i in items if i not in titles]
        if unknown:
            raise DataFormatError(path, f"entry {k}: item ids present in the title file", found=str(unknown[:5]))
        history, liked = items[:init], items[init : init + liked_n]
        canset = [i for i in pool if i not in full]
        train_cands = rng.sample(canset, cfg.sim_train_cans - 1) + [items[init - 1]]
        rng.shuffle(train_cands)
        taken = set(train_cands)
        canset = [i for i in pool if i not in full and i not in taken]
        judged = rng.sample(canset, fake_n) + liked
        rng.shuffle(judged)
        liked_set = set(liked)
        hist.append(history)
        pos.append(liked)
        neg.append([i for i in judged if i not in liked_set])
        judge.append(judged)
        labels.append([i in liked_set for i in judged])
        user_ids.append(str(user["user_id"]))

    ho, hi = _flatten(hist, index_of)
    po, pi = _flatten(pos, index_of)
    no, ni = _flatten(neg, index_of)
    jo, ji = _flatten(judge, index_of)
    sim = UserSimSet(user=np.arange(first_user, first_user + len(users), dtype=np.int64), hist_offsets=ho, hist_items=hi,
                     pos_offsets=po, pos_items=pi, neg_offsets=no, neg_items=ni, judge_offsets=jo, judge_items=ji,
                     judge_labels=np.array([x for row in labels for x in row], dtype=bool))
    return sim, user_ids


def _empty_user_sim() -> UserSimSet:
    zero, empty = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return UserSimSet(user=empty, hist_offsets=zero, hist_items=empty, pos_offsets=zero, pos_items=empty, neg_offsets=zero,
                      neg_items=empty, judge_offsets=zero, judge_items=empty, judge_labels=np.zeros(0, dtype=bool))


def import_llara(raw_dir: str | Path, cfg: LlaraImportConfig = LlaraImportConfig(), user_sim_file: str | Path | None = None,
                 name: str | None = None) -> Prepared:
    """Read a LLaRA/AFL folder and draw its candidates; returns a :class:`Prepared` for ``write_outputs``."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataFormatError(raw_dir, "a folder with train_data.df, Val_data.df, Test_data.df and id2name.txt or u.item")
    titles, title_path = read_titles(raw_dir)
    pool = list(titles)
    if cfg.num_candidates > len(pool):
        raise ValueError(f"llara import: num_candidates ({cfg.num_candidates}) exceeds the {len(pool)} items of {title_path}")
    pad = _padding_id(raw_dir, titles)
    index_of = {item: k for k, item in enumerate(pool)}
    drops = DropCounter()
    splits: dict[str, SplitSamples] = {}
    files = [title_path.name]
    for split in SPLITS:
        path = raw_dir / SPLIT_FILES[split]
        if not path.is_file():
            raise DataFormatError(path, f"the {split} file of a LLaRA/AFL folder")
        files.append(path.name)
        rows, dropped = _read_split(path, pad, titles)
        if dropped:
            drops.add(f"{split}_len_seq_below_{LLARA_MIN_LEN_SEQ}", dropped)
        rng = random.Random(cfg.seed)
        candidates = [draw_candidates(rng, pool, h, t, cfg.num_candidates) for h, t in zip(rows.histories, rows.targets)]
        n = len(rows.targets)
        hist_offsets, hist_items = _flatten(rows.histories, index_of)
        splits[split] = SplitSamples(
            user=np.zeros(n, dtype=np.int64),
            target=np.array([index_of[t] for t in rows.targets], dtype=np.int64),
            hist_offsets=hist_offsets,
            hist_items=hist_items,
            candidates=np.array([[index_of[c] for c in row] for row in candidates], dtype=np.int64).reshape(n, cfg.num_candidates),
        )

    user_ids = [""]
    user_sim = {"valid": _empty_user_sim(), "test": _empty_user_sim()}
    info: dict[str, Any] = {"llara_import": asdict(cfg), "padding_id": pad, "candidate_draw": "AFL/LLaRA negative_sampling, "
                            f"random.Random({cfg.seed}) per split, rows in file order", "user_ids": "none in LLaRA's files (empty)"}
    if user_sim_file is not None:
        sim_path = Path(user_sim_file)
        if not sim_path.is_file():
            raise DataFormatError(sim_path, "AFL's user-simulation file (lastfm_ab/test_llara.pkl)")
        files.append(sim_path.name)
        sim, sim_users = _user_sim(sim_path, pool, titles, cfg, index_of, first_user=len(user_ids))
        user_ids += sim_users
        user_sim["test"] = sim
        liked, fake = cfg.sim_counts()
        info["user_sim"] = {"source": "AFL lastfmAB_dataset", "liked_per_user": liked, "not_liked_per_user": fake}

    titles_out, renamed = disambiguate_titles([str(i) for i in pool], [titles[i] for i in pool])
    train = splits["train"]
    every = np.concatenate([s.target for s in splits.values()] + [s.hist_items for s in splits.values()])
    interactions = int(sum(len(s) for s in splits.values()))
    info.update(titles_renamed=renamed, popularity="train_interactions: the number of training rows whose target is the item")
    return Prepared(
        name=name or f"{raw_dir.name.lower()}_llara",
        format=FORMAT,
        config=ProtocolConfig(seed=cfg.seed, num_candidates=cfg.num_candidates, min_history=LLARA_MIN_LEN_SEQ, max_history=PADDING_REMOVALS),
        user_ids=np.array(user_ids, dtype=object),
        item_ids=np.array([str(i) for i in pool], dtype=object),
        titles=np.array(titles_out, dtype=object),
        raw_titles=np.array([titles[i] for i in pool], dtype=object),
        item_interactions=np.bincount(every, minlength=len(pool)),
        item_train_interactions=np.bincount(train.target, minlength=len(pool)),
        splits=splits,
        user_sim=user_sim,
        users_per_split={split: 0 for split in SPLITS},
        drops=drops,
        raw_stats={"users": len(user_ids) - 1, "items": len(pool), "interactions": interactions},
        clean_stats={"users": len(user_ids) - 1, "items": len(pool), "interactions": interactions},
        info=info,
        files=files,
        title_normalizer="llara",
    )
