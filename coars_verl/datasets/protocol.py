"""The data protocol (data_prep/README.md, "Protocol and the choices behind it"; LLaRA / AFL style), vectorised.

Steps, in order (each drop is counted by reason):
1. items without a usable title are dropped, with their interactions; interactions whose item is
   not in the item file are dropped;
2. repeated (user, item) pairs keep their earliest occurrence;
3. optional k-core filtering (users and items with >= k interactions, iterated);
4. titles are made unique (case-insensitively) over the remaining items;
5. each user's interactions are ordered by (timestamp, tiebreak, item id);
6. users with at least min_history + 1 sequence items are split train/valid/test (8:1:1 by
   default) with a seeded permutation;
7. sliding windows: every position t >= min_history of a user's sequence is a sample with the
   last <= max_history items before it as history and item t as target (optionally only the
   most recent N windows per user);
8. candidates: the target plus (num_candidates - 1) items drawn uniformly without replacement from
   the items the user never interacted with, shuffled;
9. user-simulation sets (valid and test users): positives = the user's last
   min(sim_positives, len - min_history) items (held-out future), history = the <= max_history
   items before them, negatives = round(ratio * positives) never-interacted items, and the
   shuffled list of items to judge with like/dislike labels.

Randomness comes from numpy Generators spawned from one SeedSequence(seed): the user split, the
candidates of each split, and the user-simulation negatives of each split use separate streams,
so e.g. capping train windows does not change the test candidates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coars_verl.datasets.errors import DropCounter
from coars_verl.datasets.loaders import LoadedDataset
from coars_verl.datasets.progress import progress
from coars_verl.datasets.titles import disambiguate_titles


SPLITS = ("train", "valid", "test")


NEGATIVE_SAMPLINGS = ("uniform", "popularity")


def _option(default: Any, help: str, *, flag: str | None = None, minimum: int | None = None, choices: tuple | None = None) -> Any:
    """A protocol field with what its command-line option needs (data_prep's flags are generated from these)."""
    return field(default=default, metadata={"help": help, "flag": flag, "minimum": minimum, "choices": choices})


@dataclass(frozen=True)
class ProtocolConfig:
    """The protocol's settings; each field's help and bounds make its data_prep option
    (``coars_verl.datasets.cli.add_protocol_arguments``)."""

    seed: int = _option(42, "seed of the split and of all sampling")
    max_history: int = _option(10, "history length cap", minimum=1)
    min_history: int = _option(3, "shortest history of a sample", minimum=1)
    num_candidates: int = _option(20, "candidate set size, target included", minimum=1)
    split_ratios: tuple[float, float, float] = _option((8.0, 1.0, 1.0), "user split ratios TRAIN:VALID:TEST", flag="--split")
    max_train_samples_per_user: int = _option(0, "keep each train user's N most recent windows (0 = all)", minimum=0)
    max_eval_samples_per_user: int = _option(
        0, "same for valid/test users (0 = all; 1 = one sample per user, the LLaRA evaluation setting)", minimum=0)
    sim_positives: int = _option(5, "held-out future items per user-simulation user, at most", minimum=1)
    sim_negative_ratio: float = _option(1.0, "user-simulation negatives per positive (AFL: 1)")
    core: int = _option(0, "k-core filter on users and items, 0 = off", minimum=0)
    negatives: str = _option(
        "popularity",
        "candidate negatives: uniform over never-interacted items, or weighted by training interactions, so that "
        "negatives are about as popular as targets and the popularity baseline is not handed the answer (measured "
        "popularity Hit@1 on test windows: LastFM 6.6 % (uniform 46.8 %), ml-100k 10.3 % (uniform 33.7 %); "
        "stats.json info.popularity_check reports it)",
        choices=NEGATIVE_SAMPLINGS,
    )

    def __post_init__(self) -> None:
        if self.max_history < 1:
            raise ValueError("max_history must be >= 1")
        if not 1 <= self.min_history <= self.max_history:
            raise ValueError("min_history must be between 1 and max_history")
        if self.num_candidates < 1:
            raise ValueError("num_candidates must be >= 1")
        if len(self.split_ratios) != 3 or min(self.split_ratios) < 0 or sum(self.split_ratios) <= 0:
            raise ValueError("split_ratios must be three non-negative numbers with a positive sum")
        if self.max_train_samples_per_user < 0 or self.max_eval_samples_per_user < 0:
            raise ValueError("sample caps must be >= 0 (0 = no cap)")
        if self.negatives not in NEGATIVE_SAMPLINGS:
            raise ValueError(f"negatives must be one of {NEGATIVE_SAMPLINGS}, got {self.negatives!r}")
        if self.sim_positives < 1:
            raise ValueError("sim_positives must be >= 1")
        if self.sim_negative_ratio < 0:
            raise ValueError("sim_negative_ratio must be >= 0")
        if self.core < 0:
            raise ValueError("core must be >= 0")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["split_ratios"] = [float(x) for x in self.split_ratios]
        return d


@dataclass
class SplitSamples:
    """Samples of one split, as indices into Prepared.item_ids / user_ids."""

    user: np.ndarray  # (N,) user index
    target: np.ndarray  # (N,) item index
    hist_offsets: np.ndarray  # (N + 1,) offsets into hist_items
    hist_items: np.ndarray  # flat item indices, chronological per sample
    candidates: np.ndarray  # (N, C) item indices, shuffled; contains the target once

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclass
class UserSimSet:
    user: np.ndarray  # (U,)
    hist_offsets: np.ndarray
    hist_items: np.ndarray
    pos_offsets: np.ndarray
    pos_items: np.ndarray  # chronological
    neg_offsets: np.ndarray
    neg_items: np.ndarray
    judge_offsets: np.ndarray
    judge_items: np.ndarray  # shuffled positives + negatives
    judge_labels: np.ndarray  # bool, 1 = positive

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclass
class Prepared:
    name: str
    format: str
    config: ProtocolConfig
    user_ids: np.ndarray  # object array of str, natural order
    item_ids: np.ndarray  # object array of str, natural order
    titles: np.ndarray  # object array of unique titles, aligned with item_ids
    raw_titles: np.ndarray  # titles before disambiguation
    item_interactions: np.ndarray  # interactions per item (all users)
    item_train_interactions: np.ndarray  # interactions per item by train users
    splits: dict[str, SplitSamples]
    user_sim: dict[str, UserSimSet]
    users_per_split: dict[str, int]
    drops: DropCounter
    raw_stats: dict[str, int]
    clean_stats: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    title_normalizer: str = "clean"


def natural_order(ids: np.ndarray) -> np.ndarray:
    """Permutation sorting string ids numerically when they are plain digit strings, else
    lexicographically (digit ids first; ties, e.g. "7" and "007", by the string). Deterministic."""
    s = pd.Series(np.asarray(ids, dtype=object)).astype(str)
    isnum = s.str.fullmatch(r"\d{1,18}").to_numpy(dtype=bool)
    num = np.zeros(len(s), dtype=np.int64)
    if isnum.any():
        num[isnum] = s[isnum].astype(np.int64).to_numpy()
    str_rank = np.empty(len(s), dtype=np.int64)
    str_rank[np.argsort(s.to_numpy(dtype=str), kind="stable")] = np.arange(len(s))
    return np.lexsort((str_rank, num, ~isnum))


class InteractionSet:
    """Membership test for (user, item) pairs: a dense bitmap when users x items is small enough,
    else binary search in the sorted pair keys ``user * n_items + item``."""

    DENSE_LIMIT = 64_000_000

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        self.keys = np.unique(keys)
        self.dense: np.ndarray | None = None
        if self.n_users * self.n_items <= self.DENSE_LIMIT:
            self.dense = np.zeros(self.n_users * self.n_items, dtype=bool)
            self.dense[self.keys] = True

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        if self.dense is not None:
            return self.dense[keys]
        if self.keys.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        return self.keys[pos] == keys

    def items_of(self, user: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.keys, [user * self.n_items, (user + 1) * self.n_items])
        return self.keys[lo:hi] - user * self.n_items

    def degree(self) -> np.ndarray:
        return np.bincount(self.keys // self.n_items, minlength=self.n_users)


def sample_negatives(
    rng: np.random.Generator,
    users: np.ndarray,
    k: int,
    interacted: InteractionSet,
    max_rounds: int = 64,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """For each row's user, ``k`` distinct items drawn from the items the user never interacted
    with (sequential rejection sampling, vectorised over rows): uniformly, or with probability
    proportional to ``weights`` (``(n_items,)``, non-negative; zero-weight items are never drawn).
    Returns an (N, k) int64 array in draw order. Every user must have >= k such items.
    """
    users = np.asarray(users, dtype=np.int64)
    n_items = interacted.n_items
    n = users.shape[0]
    out = np.full((n, k), -1, dtype=np.int64)
    if n == 0 or k == 0:
        return out
    p = None
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (n_items,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be ({n_items},) non-negative with a positive sum")
        p = weights / weights.sum()
    filled = np.zeros(n, dtype=np.int64)
    pending = np.arange(n)
    rounds = 0
    while pending.size and rounds < max_rounds:
        rounds += 1
        need = k - filled[pending]
        width = int(need.max()) + int(need.max()) // 2 + 4
        if p is None:
            draws = rng.integers(0, n_items, size=(pending.size, width), dtype=np.int64)
        else:
            draws = rng.choice(n_items, size=(pending.size, width), p=p).astype(np.int64)
        draws[interacted.contains(users[pending, None], draws)] = -1
        comb = np.concatenate([out[pending], draws], axis=1)
        # First occurrence of each value in a row (already-chosen items come first and stay).
        order = np.argsort(comb, axis=1, kind="stable")
        sorted_vals = np.take_along_axis(comb, order, axis=1)
        dup_sorted = np.zeros(sorted_vals.shape, dtype=bool)
        dup_sorted[:, 1:] = sorted_vals[:, 1:] == sorted_vals[:, :-1]
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        valid = (comb >= 0) & ~dup
        rank = np.cumsum(valid, axis=1)
        take = valid & (rank <= k)
        rows, cols = np.nonzero(take)
        new = np.full((pending.size, k), -1, dtype=np.int64)
        new[rows, rank[rows, cols] - 1] = comb[rows, cols]
        out[pending] = new
        filled[pending] = np.minimum(rank[:, -1], k)
        pending = pending[filled[pending] < k]
    for r in pending:  # pathological: users who interacted with almost every item
        u = int(users[r])
        chosen = out[r][out[r] >= 0]
        allowed = np.setdiff1d(np.arange(n_items) if p is None else np.flatnonzero(p > 0), np.concatenate([interacted.items_of(u), chosen]))
        need = k - chosen.size
        if allowed.size < need:
            raise ValueError(f"user index {u} has only {allowed.size + chosen.size} never-interacted items, {k} needed")
        out[r, chosen.size :] = rng.choice(allowed, size=need, replace=False, p=None if p is None else p[allowed] / p[allowed].sum())
    return out


def popularity_check(splits: dict[str, "SplitSamples"], train_item_counts: np.ndarray) -> dict[str, dict[str, float]]:
    """Per split, what makes a candidate protocol easy for the popularity baseline: its Hit@1 (the
    candidate with the most training interactions, ties to the lowest item index, as
    ``coars_verl.eval.baselines`` picks) and the median training count of targets and of negatives."""
    out: dict[str, dict[str, float]] = {}
    for name, samples in splits.items():
        if not len(samples):
            out[name] = {"samples": 0}
            continue
        counts = train_item_counts[samples.candidates]
        order = np.argsort(samples.candidates, axis=1, kind="stable")
        ranked = np.take_along_axis(counts, order, axis=1)
        pick = np.take_along_axis(samples.candidates, order, axis=1)[np.arange(len(samples)), np.argmax(ranked == ranked.max(axis=1, keepdims=True), axis=1)]
        is_target = samples.candidates == samples.target[:, None]
        out[name] = {
            "samples": int(len(samples)),
            "popularity_hit_at_1": float(np.mean(pick == samples.target)),
            "random_hit_at_1": float(1.0 / samples.candidates.shape[1]),
            "target_train_count_median": float(np.median(train_item_counts[samples.target])),
            "negative_train_count_median": float(np.median(counts[~is_target])),
        }
    return out


def _row_permutation(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    return np.argsort(rng.random((n, width)), axis=1, kind="stable")


def _split_sizes(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    total = float(sum(ratios))
    n_valid = int(np.floor(n * ratios[1] / total + 0.5))
    n_test = int(np.floor(n * ratios[2] / total + 0.5))
    if n_valid + n_test > n:
        n_test = n - n_valid
    return n - n_valid - n_test, n_valid, n_test


_STREAM_NAMES = ("split", "candidates/train", "candidates/valid", "candidates/test", "user_sim/valid", "user_sim/test", "spare")
"""Named random streams, children of ``SeedSequence(seed)`` in this order (the order fixes every draw)."""


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One generator per named step (:data:`_STREAM_NAMES`), so that a step draws the same numbers
    whatever the others do."""
    children = np.random.SeedSequence(seed).spawn(len(_STREAM_NAMES))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAM_NAMES, children)}


@dataclass
class _Interactions:
    """The interactions between two steps of :func:`prepare`, as parallel arrays."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    tiebreak: np.ndarray
    in_sequence: np.ndarray

    def select(self, keep: np.ndarray) -> "_Interactions":
        return _Interactions(self.user[keep], self.item[keep], self.timestamp[keep], self.tiebreak[keep], self.in_sequence[keep])


@dataclass
class _Sequences:
    """Each user's sequence interactions in time order: items ``item[start[u] : start[u] + length[u]]``."""

    user: np.ndarray
    item: np.ndarray
    length: np.ndarray
    start: np.ndarray


def prepare(data: LoadedDataset, config: ProtocolConfig = ProtocolConfig(), quiet: bool = False) -> Prepared:
    """The protocol (data_prep/README.md) as named steps, each counting what it drops."""
    cfg = config
    drops = DropCounter()
    drops.merge(data.drops)
    info: dict[str, Any] = dict(data.info)
    steps = progress(total=6, desc=f"prepare {data.name}", quiet=quiet)
    streams = random_streams(cfg.seed)

    titled, inter = _keep_titled_items(data, drops)
    item_codes_all = pd.Index(titled["item_id"].to_numpy(dtype=object))
    rows, user_uniques = _remove_duplicates(inter, item_codes_all, drops)
    steps.update()
    if cfg.core > 0:
        rows = _filter_k_core(rows, len(user_uniques), len(item_codes_all), cfg.core, drops)
    steps.update()

    used_items, item_ids, remap_item = _natural_remap(rows.item, item_codes_all.to_numpy())
    raw_titles = titled["title"].to_numpy(dtype=object)[used_items]
    hints = titled["hint"].to_numpy(dtype=object)[used_items]
    titles_l, n_renamed = disambiguate_titles(item_ids.tolist(), raw_titles.tolist(), hints.tolist())
    titles = np.array(titles_l, dtype=object)
    info["titles_disambiguated"] = int(n_renamed)
    info["titled_items_without_remaining_interactions"] = int(len(titled) - len(item_ids))
    _, user_ids, remap_user = _natural_remap(rows.user, np.asarray(user_uniques, dtype=object))
    n_users, n_items = len(user_ids), len(item_ids)
    u_idx, i_idx = remap_user[rows.user], remap_item[rows.item]
    drops.add("users_without_usable_interactions", int(data.interactions["user_id"].nunique() - n_users))
    interacted = InteractionSet(u_idx, i_idx, n_users, n_items)
    degree = np.bincount(u_idx, minlength=n_users)
    item_interactions = np.bincount(i_idx, minlength=n_items)
    steps.update()

    seq = _sequences(u_idx, i_idx, rows, n_users)
    eligible, split_users = _split_users(seq, degree, n_items, cfg, streams["split"], drops)
    steps.update()

    train_item_counts = np.bincount(i_idx[np.isin(u_idx, split_users["train"])], minlength=n_items)
    # add-one smoothing: every never-interacted item stays drawable (the eligibility rule above
    # counts them all), popular items are drawn about in proportion to their popularity
    weights = train_item_counts + 1.0 if cfg.negatives == "popularity" else None
    splits = {name: _windows(seq, split_users[name], cfg, interacted, weights, streams[f"candidates/{name}"], name == "train")
              for name in SPLITS}
    info["popularity_check"] = popularity_check(splits, train_item_counts)
    steps.update()

    user_sim = {name: _user_sim_set(seq, split_users[name], cfg, interacted, degree, n_items, streams[f"user_sim/{name}"], name, drops)
                for name in ("valid", "test")}
    steps.update()
    steps.close()

    train_mask = np.zeros(n_users, dtype=bool)
    train_mask[split_users["train"]] = True
    item_train = np.bincount(seq.item[train_mask[seq.user]], minlength=n_items)
    clean_stats = {
        "users": int(n_users),
        "items": int(n_items),
        "interactions": int(len(u_idx)),
        "sequence_interactions": int(rows.in_sequence.sum()),
        "users_with_samples": int(eligible.size),
    }
    return Prepared(
        name=data.name,
        format=data.format,
        config=cfg,
        user_ids=user_ids,
        item_ids=item_ids,
        titles=titles,
        raw_titles=raw_titles,
        item_interactions=item_interactions,
        item_train_interactions=item_train,
        splits=splits,
        user_sim=user_sim,
        users_per_split={k: int(v.size) for k, v in split_users.items()},
        drops=drops,
        raw_stats=dict(data.raw_stats),
        clean_stats=clean_stats,
        info=info,
        files=list(data.files),
        title_normalizer=data.title_normalizer,
    )


def _keep_titled_items(data: LoadedDataset, drops: DropCounter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items with a title, and the interactions with them (unknown and untitled items counted)."""
    items = data.items
    has_title = items["title"].map(lambda t: bool(t)).to_numpy(dtype=bool)
    titled = items.loc[has_title]
    drops.add("items_without_title", int((~has_title).sum()))
    inter = data.interactions
    known = inter["item_id"].isin(items["item_id"]).to_numpy()
    drops.add("interactions_unknown_item", int((~known).sum()))
    ok = inter["item_id"].isin(titled["item_id"]).to_numpy()
    drops.add("interactions_item_without_title", int((known & ~ok).sum()))
    return titled, inter.loc[ok]


def _remove_duplicates(inter: pd.DataFrame, item_codes: pd.Index, drops: DropCounter) -> tuple[_Interactions, Any]:
    """Each (user, item) once, its earliest occurrence (ties: tiebreak, then the natural item order);
    returns the rows in (user code, time) order and the user codes' ids."""
    u_codes, u_uniques = pd.factorize(inter["user_id"], sort=False)
    i_codes = item_codes.get_indexer(inter["item_id"])
    ts, tb = inter["timestamp"].to_numpy(), inter["tiebreak"].to_numpy()
    titled_order = natural_order(item_codes.to_numpy())
    item_rank = np.empty(len(titled_order), dtype=np.int64)
    item_rank[titled_order] = np.arange(len(titled_order))
    order = np.lexsort((item_rank[i_codes], tb, ts, u_codes))
    pair = u_codes.astype(np.int64)[order] * len(item_codes) + i_codes[order]
    first = ~pd.Series(pair).duplicated(keep="first").to_numpy()
    drops.add("duplicate_interactions", int((~first).sum()))
    rows = _Interactions(u_codes, i_codes, ts, tb, inter["in_sequence"].to_numpy())
    return rows.select(order[first]), u_uniques


def _filter_k_core(rows: _Interactions, n_users: int, n_items: int, core: int, drops: DropCounter) -> _Interactions:
    """Repeatedly drop interactions of users or items with fewer than ``core`` of them."""
    keep = np.ones(len(rows.user), dtype=bool)
    while True:
        uc = np.bincount(rows.user[keep], minlength=n_users)
        ic = np.bincount(rows.item[keep], minlength=n_items)
        new_keep = keep & (uc[rows.user] >= core) & (ic[rows.item] >= core)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    drops.add("interactions_removed_by_k_core", int((~keep).sum()))
    return rows.select(keep)


def _natural_remap(codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The codes still used, in the natural order of their ids: ``(used codes, their ids, code -> new
    index, -1 for codes no longer used)``. The one remapping of items and of users."""
    used = np.unique(codes)
    ids_used = ids[used]
    natural = natural_order(ids_used)
    used = used[natural]
    remap = np.full(len(ids), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return used, ids_used[natural], remap


def _sequences(u_idx: np.ndarray, i_idx: np.ndarray, rows: _Interactions, n_users: int) -> _Sequences:
    s = rows.in_sequence
    full = np.lexsort((i_idx[s], rows.tiebreak[s], rows.timestamp[s], u_idx[s]))  # i_idx follows the natural item order
    seq_user, seq_item = u_idx[s][full], i_idx[s][full]
    length = np.bincount(seq_user, minlength=n_users)
    return _Sequences(seq_user, seq_item, length, np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64))


def _split_users(seq: _Sequences, degree: np.ndarray, n_items: int, cfg: ProtocolConfig, rng: np.random.Generator,
                 drops: DropCounter) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Users with a sample (long enough, enough never-interacted items), split at random by the ratios."""
    long_enough = seq.length >= cfg.min_history + 1
    enough_neg = (n_items - degree) >= max(cfg.num_candidates - 1, 0)
    drops.add("users_too_short_for_a_sample", int((~long_enough).sum()))
    drops.add("users_without_enough_negatives", int((long_enough & ~enough_neg).sum()))
    eligible = np.flatnonzero(long_enough & enough_neg)
    perm = rng.permutation(eligible.size)
    n_tr, n_va, _ = _split_sizes(eligible.size, cfg.split_ratios)
    return eligible, {
        "train": np.sort(eligible[perm[:n_tr]]),
        "valid": np.sort(eligible[perm[n_tr : n_tr + n_va]]),
        "test": np.sort(eligible[perm[n_tr + n_va :]]),
    }


def _history_positions(base: np.ndarray, end: np.ndarray, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows whose history is the ``max_history`` sequence items before position ``end`` (relative
    to ``base``): ``(offsets (n + 1,), flat positions into the sequence arrays)``. The one place of
    the window arithmetic, for samples and user-simulation sets."""
    h_len = np.minimum(end, max_history)
    h_off = np.concatenate([[0], np.cumsum(h_len)]).astype(np.int64)
    h_pos = np.repeat(base + end - h_len, h_len) + (np.arange(int(h_len.sum())) - np.repeat(h_off[:-1], h_len))
    return h_off, h_pos


def _windows(seq: _Sequences, users: np.ndarray, cfg: ProtocolConfig, interacted: "InteractionSet", weights: np.ndarray | None,
             rng: np.random.Generator, train: bool) -> "SplitSamples":
    """Every window of the users (their most recent ones, capped per user): history, target and
    candidates (the target and sampled never-interacted items, shuffled)."""
    cap = cfg.max_train_samples_per_user if train else cfg.max_eval_samples_per_user
    n_win = seq.length[users] - cfg.min_history
    keep = np.minimum(n_win, cap) if cap > 0 else n_win
    total = int(keep.sum())
    win_user = np.repeat(users, keep)
    group_start = np.repeat(np.cumsum(keep) - keep, keep)
    t_local = np.repeat(seq.length[users] - keep, keep) + (np.arange(total) - group_start)
    base = seq.start[win_user]
    target = seq.item[base + t_local]
    h_off, h_pos = _history_positions(base, t_local, cfg.max_history)
    negs = sample_negatives(rng, win_user, cfg.num_candidates - 1, interacted, weights=weights)
    cands = np.concatenate([target[:, None], negs], axis=1)
    cands = np.take_along_axis(cands, _row_permutation(rng, total, cfg.num_candidates), axis=1)
    return SplitSamples(win_user, target, h_off, seq.item[h_pos], cands)


def _user_sim_set(seq: _Sequences, users: np.ndarray, cfg: ProtocolConfig, interacted: "InteractionSet", degree: np.ndarray,
                  n_items: int, rng: np.random.Generator, name: str, drops: DropCounter) -> "UserSimSet":
    """Per user: the history before its last ``sim_positives`` items, those items (positives) and
    never-interacted negatives, judged in one shuffled list."""
    length, base = seq.length[users], seq.start[users]
    n_pos = np.minimum(cfg.sim_positives, length - cfg.min_history)
    cut = length - n_pos
    h_off, h_pos = _history_positions(base, cut, cfg.max_history)
    p_off = np.concatenate([[0], np.cumsum(n_pos)]).astype(np.int64)
    p_pos = np.repeat(base + cut, n_pos) + (np.arange(int(n_pos.sum())) - np.repeat(p_off[:-1], n_pos))
    pos_items = seq.item[p_pos]
    want = np.floor(n_pos * cfg.sim_negative_ratio + 0.5).astype(np.int64)
    n_neg = np.minimum(want, n_items - degree[users])
    drops.add(f"user_sim_{name}_negatives_short", int((want - n_neg).sum()))
    kmax = int(n_neg.max()) if users.size else 0
    # Users sampled at the common width kmax would need kmax free items; sample per width.
    neg_mat = np.full((users.size, kmax), -1, dtype=np.int64)
    for w in np.unique(n_neg):
        rows = np.flatnonzero(n_neg == w)
        if w > 0:
            neg_mat[rows, :w] = sample_negatives(rng, users[rows], int(w), interacted)
    n_off = np.concatenate([[0], np.cumsum(n_neg)]).astype(np.int64)
    neg_items = neg_mat[np.arange(kmax)[None, :] < n_neg[:, None]]
    # judge list: positives and negatives of a user, shuffled together
    rows = np.concatenate([np.repeat(np.arange(users.size), n_pos), np.repeat(np.arange(users.size), n_neg)])
    j_items = np.concatenate([pos_items, neg_items])
    j_labels = np.concatenate([np.ones(len(pos_items), dtype=bool), np.zeros(len(neg_items), dtype=bool)])
    jo = np.lexsort((rng.random(j_items.size), rows))
    j_off = np.concatenate([[0], np.cumsum(n_pos + n_neg)]).astype(np.int64)
    return UserSimSet(users, h_off, seq.item[h_pos], p_off, pos_items, n_off, neg_items, j_off, j_items[jo], j_labels[jo])
