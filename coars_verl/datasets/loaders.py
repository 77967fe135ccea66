"""One loader per raw format, each returning the same normalised LoadedDataset.

Normalised tables (all ids are strings, uniform across datasets):
- ``interactions``: user_id, item_id, timestamp (float64; only the order matters), tiebreak
  (float64, ascending, orders equal timestamps before the item id does), in_sequence (bool: False
  marks a known interaction that is kept out of the time-ordered sequence but still excluded from
  negatives, e.g. LastFM artists never tagged with ``--lastfm-untagged drop``).
- ``items``: item_id, title (raw title, cleaned; "" when missing), hint (text that tells apart
  different items sharing a title, e.g. a film's year; "" when none).

Nothing is filtered here except rows that cannot be interpreted at all (those raise
DataFormatError); titles are checked and items without one dropped by the protocol, which counts
them. Counts as read are kept in ``raw_stats`` (the published statistics refer to them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from coars_verl.datasets.errors import DataFormatError, DropCounter
from coars_verl.datasets.textio import (
    check_encoding,
    decode_text,
    find_file,
    iter_json_lines,
    load_json_file,
    read_bytes,
    read_delimited,
)
from coars_verl.datasets.titles import clean_title, normalize_movielens_title


LASTFM_UNTAGGED_CHOICES = ("after", "before", "drop")
LASTFM_ITEM_POOLS = ("all", "tagged")


@dataclass
class LoadedDataset:
    name: str
    """Dataset name used in data_source, e.g. ``movielens-100k``."""
    format: str
    """Input format, e.g. ``ml-100k``, ``recbole``, ``amazon2018``."""
    interactions: pd.DataFrame
    items: pd.DataFrame
    drops: DropCounter = field(default_factory=DropCounter)
    raw_stats: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    title_normalizer: str = "clean"
    """How titles were normalised (documentation in stats.json)."""


def _interactions(user_id, item_id, timestamp, tiebreak=None, in_sequence=None) -> pd.DataFrame:
    n = len(user_id)
    return pd.DataFrame(
        {
            "user_id": pd.Series(np.asarray(user_id).astype(str), dtype=object),
            "item_id": pd.Series(np.asarray(item_id).astype(str), dtype=object),
            "timestamp": np.asarray(timestamp, dtype=np.float64),
            "tiebreak": np.zeros(n) if tiebreak is None else np.asarray(tiebreak, dtype=np.float64),
            "in_sequence": np.ones(n, dtype=bool) if in_sequence is None else np.asarray(in_sequence, dtype=bool),
        }
    )


def _items(item_id, title, hint=None) -> pd.DataFrame:
    n = len(item_id)
    return pd.DataFrame(
        {
            "item_id": pd.Series(np.asarray(item_id).astype(str), dtype=object),
            "title": pd.Series(list(title), dtype=object),
            "hint": pd.Series([""] * n if hint is None else list(hint), dtype=object),
        }
    )


def _dedupe_items(items: pd.DataFrame, drops: DropCounter, prefer_titled: bool = True) -> pd.DataFrame:
    """Keep one row per item id (the first with a title, else the first); count the rest."""
    dup = items["item_id"].duplicated(keep=False)
    if not dup.any():
        return items
    if prefer_titled:
        has_title = items["title"].map(bool)
        order = np.lexsort((np.arange(len(items)), ~has_title.to_numpy()))
        items = items.iloc[order]
    kept = items.drop_duplicates("item_id", keep="first")
    drops.add("duplicate_item_rows", len(items) - len(kept))
    return kept.sort_index().reset_index(drop=True)


def _raw_stats(inter: pd.DataFrame, n_items_catalog: int, **extra: int) -> dict[str, int]:
    stats = {
        "users": int(inter["user_id"].nunique()),
        "items": int(n_items_catalog),
        "interactions": int(len(inter)),
        "items_with_interactions": int(inter["item_id"].nunique()),
    }
    stats.update({k: int(v) for k, v in extra.items()})
    return stats


# --------------------------------------------------------------------------------------------
# MovieLens
# --------------------------------------------------------------------------------------------


def _movielens_items(ids, raw_titles) -> pd.DataFrame:
    norm = [normalize_movielens_title(t) for t in raw_titles]
    return _items(ids, [t for t, _ in norm], [y for _, y in norm])


@dataclass(frozen=True)
class DelimitedTable:
    """One raw text file of a dataset and how :func:`read_delimited` reads it: separator, columns,
    typed columns, and whether its first line must name the columns (``header``)."""

    sep: str
    columns: tuple[str, ...]
    what: str
    """The file's description in error messages."""
    int_columns: tuple[str, ...] = ()
    float_columns: tuple[str, ...] = ()
    header: bool = False

    def read(self, path: Path, encoding: str, drops: DropCounter) -> pd.DataFrame:
        return read_delimited(
            path, sep=self.sep, columns=list(self.columns), header=list(self.columns) if self.header else None,
            header_mode="exact" if self.header else "none", encoding=encoding, int_columns=list(self.int_columns),
            float_columns=list(self.float_columns), what=self.what, drops=drops,
        )


RATINGS = ("user_id", "item_id", "rating", "timestamp")
RATING_INTS = ("user_id", "item_id", "timestamp")
ML100K_RATINGS = DelimitedTable("\t", RATINGS, "ml-100k ratings (user id, item id, rating, timestamp)", RATING_INTS, ("rating",))
ML100K_ITEMS = DelimitedTable("|", ("item_id", "title", "release_date", "video_release_date", "imdb_url") + tuple(f"g{i}" for i in range(19)),
                              "ml-100k items (24 '|'-separated fields: id, title, dates, URL, 19 genre flags)", ("item_id",))
ML100K_USERS = DelimitedTable("|", ("user_id", "age", "gender", "occupation", "zip"), "ml-100k users (id|age|gender|occupation|zip)", ("user_id", "age"))
ML1M_RATINGS = DelimitedTable("::", RATINGS, "ml-1m ratings (UserID::MovieID::Rating::Timestamp)", RATING_INTS, ("rating",))
ML1M_MOVIES = DelimitedTable("::", ("item_id", "title", "genres"), "ml-1m movies (MovieID::Title::Genres)", ("item_id",))
ML1M_USERS = DelimitedTable("::", ("user_id", "gender", "age", "occupation", "zip"), "ml-1m users (UserID::Gender::Age::Occupation::Zip-code)",
                            ("user_id", "age", "occupation"))
_USER_ARTISTS, _ARTISTS = ("userID", "artistID", "weight"), ("id", "name", "url", "pictureURL")
LASTFM_USER_ARTISTS = DelimitedTable("\t", _USER_ARTISTS, "LastFM user_artists.dat (userID, artistID, weight)", _USER_ARTISTS, header=True)
LASTFM_ARTISTS = DelimitedTable("\t", _ARTISTS, "LastFM artists.dat (id, name, url, pictureURL)", ("id",), header=True)
_TAG_TIMES, _TAG_DATES = ("userID", "artistID", "tagID", "timestamp"), ("userID", "artistID", "tagID", "day", "month", "year")
LASTFM_TAG_TIMESTAMPS = DelimitedTable("\t", _TAG_TIMES, "LastFM user_taggedartists-timestamps.dat", _TAG_TIMES, header=True)
LASTFM_TAG_DATES = DelimitedTable("\t", _TAG_DATES, "LastFM user_taggedartists.dat", _TAG_DATES, header=True)


def _validate_optional_users(raw_dir, name: str, table: DelimitedTable, files: list[str], drops: DropCounter, encoding: str) -> dict[str, int]:
    """Read the optional users file ``name`` when present, so that a malformed one is reported;
    append it to ``files`` and return its row count as an extra statistic (``{}`` when absent)."""
    try:
        path = find_file(raw_dir, [name], name)
    except DataFormatError:
        return {}
    users = table.read(path, encoding, drops)
    files.append(path.name)
    return {"user_file_rows": len(users)}


def load_movielens_100k(raw_dir: str | os.PathLike, encoding: str = "latin-1") -> LoadedDataset:
    """ml-100k: ``u.data`` (tab: user, item, rating, timestamp), ``u.item`` ('|', 24 fields,
    latin-1), optional ``u.user`` ('|': user, age, gender, occupation, zip). Every rating counts as
    an interaction (implicit feedback)."""
    return _load_movielens(raw_dir, encoding, "movielens-100k", "ml-100k", ("u.data", "ratings", ML100K_RATINGS),
                           ("u.item", "items", ML100K_ITEMS), ("u.user", ML100K_USERS))


def load_movielens_1m(raw_dir: str | os.PathLike, encoding: str = "latin-1") -> LoadedDataset:
    """ml-1m: ``ratings.dat`` (user::item::rating::timestamp), ``movies.dat`` (id::title::genres,
    latin-1), optional ``users.dat`` (id::gender::age::occupation::zip)."""
    return _load_movielens(raw_dir, encoding, "movielens-1m", "ml-1m", ("ratings.dat", "ratings", ML1M_RATINGS),
                           ("movies.dat", "movies", ML1M_MOVIES), ("users.dat", ML1M_USERS))


def _load_movielens(raw_dir, encoding: str, name: str, variant: str, ratings: tuple, items: tuple, users: tuple) -> LoadedDataset:
    """Both MovieLens releases: ``ratings`` and ``items`` are ``(file, what it holds, table)``, ``users`` ``(file, table)``;
    titles cleaned and deduplicated, interactions in rating time."""
    drops = DropCounter()
    (ratings_file, ratings_kind, ratings_table), (items_file, items_kind, items_table) = ratings, items
    ratings_p = find_file(raw_dir, [ratings_file], f"MovieLens {variant} {ratings_kind} ({ratings_file})")
    items_p = find_file(raw_dir, [items_file], f"MovieLens {variant} {items_kind} ({items_file})")
    ratings_df, movies = ratings_table.read(ratings_p, encoding, drops), items_table.read(items_p, encoding, drops)
    files = [ratings_p.name, items_p.name]
    extra = _validate_optional_users(raw_dir, *users, files, drops, encoding)
    items_df = _dedupe_items(_movielens_items(movies["item_id"].to_numpy(), movies["title"].tolist()), drops)
    inter = _interactions(ratings_df["user_id"].to_numpy(), ratings_df["item_id"].to_numpy(), ratings_df["timestamp"].to_numpy())
    return LoadedDataset(name, variant, inter, items_df, drops, _raw_stats(inter, items_df.shape[0], **extra), files,
                         {"order": "rating timestamp, ties by item id"}, "movielens")


# --------------------------------------------------------------------------------------------
# LastFM (hetrec2011-lastfm-2k)
# --------------------------------------------------------------------------------------------

_BEFORE = -1.0e18
_AFTER = 1.0e18


def load_lastfm(raw_dir: str | os.PathLike, untagged: str = "after", encoding: str = "utf-8", item_pool: str = "all") -> LoadedDataset:
    """hetrec2011-lastfm-2k.

    Interactions are the user-artist pairs of ``user_artists.dat`` (play counts carry no time).
    Order: a pair's time is the user's earliest tag assignment of that artist, from
    ``user_taggedartists-timestamps.dat`` (ms) when present, else from the day/month/year of
    ``user_taggedartists.dat``; equal times are ordered by descending play count, then artist id.
    Pairs the user never tagged are placed ``after`` (default) or ``before`` the tagged ones,
    by descending play count then artist id, or with ``drop`` kept out of the sequence (still
    never used as that user's negatives; counted as ``lastfm_untagged_pairs_out_of_sequence``).
    Tag assignments on artists the user has no play count for are not interactions; they are
    counted in info only. ``item_pool="tagged"`` keeps only artists that some user tagged (a
    smaller, LLaRA-like pool: their LastFM has 4,606 artists); interactions with the others are
    dropped (``lastfm_interactions_on_never_tagged_artists``).
    """
    if untagged not in LASTFM_UNTAGGED_CHOICES:
        raise ValueError(f"untagged must be one of {LASTFM_UNTAGGED_CHOICES}, got {untagged!r}")
    if item_pool not in LASTFM_ITEM_POOLS:
        raise ValueError(f"item_pool must be one of {LASTFM_ITEM_POOLS}, got {item_pool!r}")
    drops = DropCounter()
    ua_p = find_file(raw_dir, ["user_artists.dat"], "LastFM user-artist play counts (user_artists.dat)")
    ar_p = find_file(raw_dir, ["artists.dat"], "LastFM artists (artists.dat)")
    ua = LASTFM_USER_ARTISTS.read(ua_p, encoding, drops)
    ar = LASTFM_ARTISTS.read(ar_p, encoding, drops)
    files = [ua_p.name, ar_p.name]
    info: dict[str, Any] = {"untagged": untagged, "item_pool": item_pool}
    tag_p = None
    for names, kind in ((["user_taggedartists-timestamps.dat"], "timestamps"), (["user_taggedartists.dat"], "dates")):
        try:
            tag_p = find_file(raw_dir, names, names[0])
            tag_kind = kind
            break
        except DataFormatError:
            continue
    if tag_p is None:
        raise DataFormatError(
            Path(raw_dir),
            "LastFM tag assignments for the time order: " "user_taggedartists-timestamps.dat or user_taggedartists.dat",
            found="neither file",
        )
    files.append(tag_p.name)
    if tag_kind == "timestamps":
        tg = LASTFM_TAG_TIMESTAMPS.read(tag_p, encoding, drops)
        tg_time = tg["timestamp"].to_numpy(dtype=np.float64)
        info["order_source"] = "user_taggedartists-timestamps.dat (earliest tag timestamp, ms)"
    else:
        tg = LASTFM_TAG_DATES.read(tag_p, encoding, drops)
        dt = pd.to_datetime(pd.DataFrame({"year": tg["year"], "month": tg["month"], "day": tg["day"]}), errors="coerce")
        bad = dt.isna().to_numpy()
        if bad.any():
            r = int(np.argmax(bad))
            raise DataFormatError(
                tag_p,
                "a valid calendar date in day, month, year",
                line=r + 2,
                found=f"{tg['day'].iat[r]}/{tg['month'].iat[r]}/{tg['year'].iat[r]}",
            )
        tg_time = (dt - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy() * 1000.0
        info["order_source"] = "user_taggedartists.dat (earliest tag date, day/month/year)"
    first_tag = (
        pd.DataFrame({"userID": tg["userID"].to_numpy(), "artistID": tg["artistID"].to_numpy(), "t": tg_time})
        .groupby(["userID", "artistID"], sort=False)["t"]
        .min()
    )
    if item_pool == "tagged":
        on_tagged = ua["artistID"].isin(pd.unique(tg["artistID"])).to_numpy()
        drops.add("lastfm_interactions_on_never_tagged_artists", int((~on_tagged).sum()))
        ua = ua[on_tagged]
    merged = ua.merge(first_tag.rename("t").reset_index(), on=["userID", "artistID"], how="left", sort=False)
    tagged = merged["t"].notna().to_numpy()
    n_tag_pairs = int(len(first_tag))
    info["pairs_tagged"] = int(tagged.sum())
    info["pairs_untagged"] = int((~tagged).sum())
    info["tagged_pairs_without_play_count"] = n_tag_pairs - int(tagged.sum())
    t = merged["t"].to_numpy(dtype=np.float64).copy()
    in_seq = np.ones(len(merged), dtype=bool)
    if untagged == "after":
        t[~tagged] = _AFTER
    elif untagged == "before":
        t[~tagged] = _BEFORE
    else:
        t[~tagged] = _AFTER
        in_seq[~tagged] = False
        drops.add("lastfm_untagged_pairs_out_of_sequence", int((~tagged).sum()))
    inter = _interactions(
        merged["userID"].to_numpy(),
        merged["artistID"].to_numpy(),
        t,
        tiebreak=-merged["weight"].to_numpy(dtype=np.float64),
        in_sequence=in_seq,
    )
    items = _dedupe_items(_items(ar["id"].to_numpy(), [clean_title(x) for x in ar["name"].tolist()]), drops)
    stats = _raw_stats(inter, items.shape[0], tag_assignments=len(tg))
    return LoadedDataset("lastfm", "hetrec2011-lastfm-2k", inter, items, drops, stats, files, info)


# --------------------------------------------------------------------------------------------
# Amazon Musical Instruments
# --------------------------------------------------------------------------------------------


def _require(obj: dict, keys: Sequence[str], path: Path, lineno: int, label: str) -> list[Any]:
    out = []
    for k in keys:
        v = obj.get(k)
        if v is None or (isinstance(v, str) and not v.strip()):
            raise DataFormatError(
                path, f"{label}: a non-empty field {k!r}", line=lineno, found="missing" if k not in obj else repr(v)
            )
        out.append(v)
    return out


def _as_time(v: Any, path: Path, lineno: int, key: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = float("nan")
    if not np.isfinite(f):
        raise DataFormatError(path, f"a numeric {key!r}", line=lineno, found=repr(v))
    return f


def _read_amazon_reviews(
    path: Path, user_key: str, item_key: str, time_key: str, label: str, encoding: str, quiet: bool
) -> pd.DataFrame:
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    for lineno, obj in iter_json_lines(path, encoding=encoding, what=label, quiet=quiet):
        u, i, t = _require(obj, (user_key, item_key, time_key), path, lineno, label)
        users.append(str(u))
        items.append(str(i))
        times.append(_as_time(t, path, lineno, time_key))
    if not users:
        raise DataFormatError(path, f"{label} with at least one review", found="no reviews")
    return _interactions(np.array(users, dtype=object), np.array(items, dtype=object), np.array(times))


def _read_amazon_meta(
    path: Path, item_key: str, label: str, encoding: str, quiet: bool, wanted: set[str] | None
) -> pd.DataFrame:
    ids: list[str] = []
    titles: list[str] = []
    for lineno, obj in iter_json_lines(path, encoding=encoding, what=label, quiet=quiet):
        (i,) = _require(obj, (item_key,), path, lineno, label)
        i = str(i)
        if wanted is not None and i not in wanted:
            continue
        ids.append(i)
        titles.append(clean_title(obj.get("title")))
    return _items(np.array(ids, dtype=object), titles)


@dataclass(frozen=True)
class AmazonRelease:
    """Where one Amazon Reviews release keeps the Musical Instruments files and what their keys are."""

    name: str
    year: int
    reviews: tuple[str, ...]
    reviews_label: str
    metadata: tuple[str, ...]
    user_key: str
    item_key: str
    time_key: str
    order: str


AMAZON_2018 = AmazonRelease("amazon2018", 2018, ("Musical_Instruments_5.json", "Musical_Instruments_5.json.gz"),
                            "Musical Instruments 5-core reviews", ("meta_Musical_Instruments.json", "meta_Musical_Instruments.json.gz"),
                            "reviewerID", "asin", "unixReviewTime", "unixReviewTime, ties by item id")
AMAZON_2023 = AmazonRelease("amazon2023", 2023, ("Musical_Instruments.jsonl", "Musical_Instruments.jsonl.gz"),
                            "Musical Instruments reviews", ("meta_Musical_Instruments.jsonl", "meta_Musical_Instruments.jsonl.gz"),
                            "user_id", "parent_asin", "timestamp", "timestamp (ms), ties by item id")


def load_amazon2018(raw_dir: str | os.PathLike, encoding: str = "utf-8", quiet: bool = False) -> LoadedDataset:
    """Amazon Reviews 2018 (Ni et al.): ``Musical_Instruments_5.json(.gz)`` (5-core reviews:
    reviewerID, asin, unixReviewTime) and ``meta_Musical_Instruments.json(.gz)`` (asin, title).
    Only metadata of reviewed items is kept; the catalog count is of those."""
    return _load_amazon(raw_dir, AMAZON_2018, encoding, quiet)


def load_amazon2023(raw_dir: str | os.PathLike, encoding: str = "utf-8", quiet: bool = False) -> LoadedDataset:
    """Amazon Reviews 2023 (Hou et al.): ``Musical_Instruments.jsonl(.gz)`` (user_id, parent_asin,
    timestamp in ms) and ``meta_Musical_Instruments.jsonl(.gz)`` (parent_asin, title). Items are
    parent_asin (the key of the metadata)."""
    return _load_amazon(raw_dir, AMAZON_2023, encoding, quiet)


def _load_amazon(raw_dir, release: AmazonRelease, encoding: str, quiet: bool) -> LoadedDataset:
    rev_p = find_file(raw_dir, list(release.reviews), f"Amazon {release.year} {release.reviews_label}")
    meta_p = find_file(raw_dir, list(release.metadata), f"Amazon {release.year} Musical Instruments metadata")
    drops = DropCounter()
    keys = (release.user_key, release.item_key, release.time_key)
    inter = _read_amazon_reviews(rev_p, *keys, f"Amazon {release.year} review (JSON with {', '.join(keys)})", encoding, quiet)
    items = _read_amazon_meta(meta_p, release.item_key, f"Amazon {release.year} metadata (JSON with {release.item_key}, title)",
                              encoding, quiet, set(inter["item_id"].unique()))
    items = _dedupe_items(items, drops)
    return LoadedDataset("instruments", release.name, inter, items, drops, _raw_stats(inter, len(items)), [rev_p.name, meta_p.name],
                         {"order": release.order, "item_id": release.item_key})


def load_lcrec(raw_dir: str | os.PathLike, name: str = "Instruments", encoding: str = "utf-8") -> LoadedDataset:
    """LC-Rec processed files: ``<name>.inter.json`` ({user index: [item index, ...]} in time
    order) and ``<name>.item.json`` ({item index: {"title": ..., ...}}). The list position is the
    time order (the files carry no timestamps)."""
    inter_p = find_file(raw_dir, [f"{name}.inter.json"], f"LC-Rec interactions ({name}.inter.json)")
    item_p = find_file(raw_dir, [f"{name}.item.json"], f"LC-Rec items ({name}.item.json)")
    drops = DropCounter()
    seqs = load_json_file(inter_p, encoding=encoding, what="LC-Rec interactions")
    if not isinstance(seqs, dict):
        raise DataFormatError(
            inter_p, "a JSON object mapping each user to a list of item ids", found=type(seqs).__name__
        )
    users: list[str] = []
    items_l: list[str] = []
    pos: list[int] = []
    for u, seq in seqs.items():
        if not isinstance(seq, list) or not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in seq):
            raise DataFormatError(
                inter_p, f"user {u!r}: a list of item ids (integers or strings)", found=repr(seq)[:120]
            )
        users.extend([str(u)] * len(seq))
        items_l.extend(str(x) for x in seq)
        pos.extend(range(len(seq)))
    if not users:
        raise DataFormatError(inter_p, "at least one interaction", found="no interactions")
    meta = load_json_file(item_p, encoding=encoding, what="LC-Rec items")
    if not isinstance(meta, dict):
        raise DataFormatError(item_p, "a JSON object mapping each item id to its features", found=type(meta).__name__)
    ids, titles = [], []
    for i, feat in meta.items():
        if not isinstance(feat, dict):
            raise DataFormatError(item_p, f"item {i!r}: an object of features with a 'title'", found=repr(feat)[:120])
        ids.append(str(i))
        titles.append(clean_title(feat.get("title")))
    inter = _interactions(np.array(users, dtype=object), np.array(items_l, dtype=object), np.array(pos))
    items = _items(np.array(ids, dtype=object), titles)
    return LoadedDataset(
        "instruments",
        "lcrec",
        inter,
        items,
        drops,
        _raw_stats(inter, len(items)),
        [inter_p.name, item_p.name],
        {"order": "position in the LC-Rec sequence"},
    )


# --------------------------------------------------------------------------------------------
# RecBole atomic files
# --------------------------------------------------------------------------------------------

RECBOLE_TITLE_FIELDS = ("title", "movie_title", "item_title", "name", "artist_name", "item_name")
RECBOLE_TIME_FIELDS = ("timestamp", "time", "unixReviewTime")
_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def _recbole_header(path: Path, text: str) -> list[tuple[str, str]]:
    first = text.split("\n", 1)[0].rstrip("\r")
    out = []
    for f in first.split("\t"):
        nm, sep, typ = f.strip().rpartition(":")
        if not sep or not nm or typ not in _RECBOLE_TYPES:
            raise DataFormatError(
                path,
                "a RecBole atomic header of tab-separated 'name:type' fields with type in " f"{list(_RECBOLE_TYPES)}",
                line=1,
                found=first,
            )
        out.append((nm, typ))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise DataFormatError(path, "distinct field names in the RecBole header", line=1, found=first)
    return out


def _recbole_find(raw_dir: Path, name: str | None, ext: str, required: bool) -> Path | None:
    root = Path(raw_dir)
    if name:
        try:
            return find_file(root, [f"{name}{ext}"], f"RecBole {ext} file")
        except DataFormatError:
            if required:
                raise
            return None
    cands = sorted(
        p for p in root.glob(f"*{ext}") if not any(p.name.endswith(f".{s}{ext}") for s in ("train", "valid", "test"))
    )
    if not cands:
        for sub in sorted(x for x in root.iterdir() if x.is_dir()) if root.is_dir() else []:
            cands = sorted(
                p
                for p in sub.glob(f"*{ext}")
                if not any(p.name.endswith(f".{s}{ext}") for s in ("train", "valid", "test"))
            )
            if cands:
                break
    if len(cands) > 1:
        raise DataFormatError(
            root, f"one RecBole {ext} file (or --recbole-name)", found=", ".join(p.name for p in cands)
        )
    if not cands:
        if required:
            raise DataFormatError(root, f"a RecBole atomic {ext} file", found="none")
        return None
    return cands[0]


def load_recbole(
    raw_dir: str | os.PathLike,
    name: str | None = None,
    dataset_name: str = "recbole",
    user_field: str | None = None,
    item_field: str | None = None,
    time_field: str | None = None,
    title_field: str | None = None,
    title_normalizer: str = "clean",
    hint_field: str | None = None,
    encoding: str = "utf-8",
) -> LoadedDataset:
    """RecBole atomic files ``<name>.inter`` (+ ``<name>.item``, optional ``<name>.user``).

    Fields are detected from the headers unless given: user = ``user_id`` (else the first field
    of ``.user``, else the first token field of ``.inter``); item = the first field of ``.item``
    (RecBole's convention), which must also be in ``.inter``; time = the first of
    RECBOLE_TIME_FIELDS present, else the file order; title = the first of RECBOLE_TITLE_FIELDS
    present in ``.item``. ``title_normalizer`` "movielens" applies the MovieLens title rules and
    uses ``release_year`` (or ``hint_field``) to tell apart films sharing a title.
    """
    root = Path(raw_dir)
    check_encoding(encoding)
    drops = DropCounter()
    inter_p = _recbole_find(root, name, ".inter", True)
    stem = inter_p.name[: -len(".inter")]
    item_p = _recbole_find(inter_p.parent, stem, ".item", True)
    user_p = _recbole_find(inter_p.parent, stem, ".user", False)
    files = [inter_p.name, item_p.name] + ([user_p.name] if user_p else [])

    def read(path: Path, what: str):
        text = decode_text(read_bytes(path), path, encoding)
        hdr = _recbole_header(path, text)
        names = [n for n, _ in hdr]
        df = read_delimited(
            path, sep="\t", columns=names, header_mode="skip", encoding=encoding, what=what, drops=drops, text=text
        )
        return hdr, df

    ihdr, inter_df = read(inter_p, "RecBole .inter file")
    item_hdr, item_df = read(item_p, "RecBole .item file")
    user_hdr, user_df = read(user_p, "RecBole .user file") if user_p else (None, None)
    inames = [n for n, _ in ihdr]
    item_names = [n for n, _ in item_hdr]

    def need(field_name: str, names: list[str], path: Path, role: str) -> str:
        if field_name not in names:
            raise DataFormatError(path, f"a {role} field {field_name!r} in the header", line=1, found="\t".join(names))
        return field_name

    if user_field is None:
        if "user_id" in inames:
            user_field = "user_id"
        elif user_hdr and user_hdr[0][0] in inames:
            user_field = user_hdr[0][0]
        else:
            toks = [n for n, t in ihdr if t == "token"]
            if not toks:
                raise DataFormatError(inter_p, "a token field for the user id", line=1, found="\t".join(inames))
            user_field = toks[0]
    need(user_field, inames, inter_p, "user")
    if item_field is None:
        item_field = item_hdr[0][0]
    need(item_field, inames, inter_p, "item")
    need(item_field, item_names, item_p, "item")
    if time_field is None:
        time_field = next((f for f in RECBOLE_TIME_FIELDS if f in inames), None)
    else:
        need(time_field, inames, inter_p, "time")
    if title_field is None:
        title_field = next((f for f in RECBOLE_TITLE_FIELDS if f in item_names), None)
        if title_field is None:
            raise DataFormatError(
                item_p,
                f"a title field (one of {list(RECBOLE_TITLE_FIELDS)}, or --title-field)",
                line=1,
                found="\t".join(item_names),
            )
    else:
        need(title_field, item_names, item_p, "title")
    if hint_field is None and title_normalizer == "movielens" and "release_year" in item_names:
        hint_field = "release_year"
    if hint_field is not None:
        need(hint_field, item_names, item_p, "hint")

    if time_field is not None:
        # Parse with line numbers for errors.
        ts = pd.to_numeric(inter_df[time_field].str.strip(), errors="coerce")
        bad = ts.isna().to_numpy()
        if bad.any():
            r = int(np.argmax(bad))
            raise DataFormatError(
                inter_p, f"a numeric {time_field!r}", line=r + 2, found=str(inter_df[time_field].iat[r])
            )
        t = ts.to_numpy(dtype=np.float64)
        order = f"{time_field}, ties by item id"
    else:
        t = np.arange(len(inter_df), dtype=np.float64)
        order = "file order of the .inter file (it has no time field)"
    u = inter_df[user_field].str.strip()
    i = inter_df[item_field].str.strip()
    empty = (u == "").to_numpy() | (i == "").to_numpy()
    if empty.any():
        r = int(np.argmax(empty))
        raise DataFormatError(inter_p, f"non-empty {user_field!r} and {item_field!r}", line=r + 2)
    inter = _interactions(u.to_numpy(), i.to_numpy(), t)
    raw_titles = item_df[title_field].tolist()
    if title_normalizer == "movielens":
        norm = [normalize_movielens_title(x) for x in raw_titles]
        titles = [a for a, _ in norm]
        hints = [b for _, b in norm]
    else:
        titles = [clean_title(x) for x in raw_titles]
        hints = [""] * len(titles)
    if hint_field is not None:
        hv = [clean_title(x) for x in item_df[hint_field].tolist()]
        hints = [h or b for h, b in zip(hv, hints)]
    items = _dedupe_items(_items(item_df[item_field].str.strip().to_numpy(), titles, hints), drops)
    extra = {"user_file_rows": len(user_df)} if user_df is not None else {}
    info = {
        "order": order,
        "fields": {"user": user_field, "item": item_field, "time": time_field, "title": title_field},
    }
    return LoadedDataset(
        dataset_name,
        "recbole",
        inter,
        items,
        drops,
        _raw_stats(inter, len(items), **extra),
        files,
        info,
        title_normalizer,
    )
