"""Real data, offline: ml-100k (RecBole package copy) and LastFM hetrec2011-lastfm-2k."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from coars_verl.datasets.cli import main_lastfm, main_movielens
from coars_verl.datasets.loaders import load_lastfm, load_recbole
from coars_verl.datasets.pipeline import OUTPUT_FILES


def _interacted(df: pd.DataFrame, u: str, i: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a, b in zip(df[u].astype(str), df[i].astype(str)):
        out[a].add(b)
    return out


@pytest.fixture(scope="session")
def ml100k_out(ml100k_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ml100k") / "out"
    assert main_movielens(["--raw-dir", str(ml100k_dir), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def lastfm_out(lastfm_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lastfm") / "out"
    assert main_lastfm(["--raw-dir", str(lastfm_dir), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def ml100k_raw(ml100k_dir) -> pd.DataFrame:
    return pd.read_csv(ml100k_dir / "ml-100k.inter", sep="\t")


@pytest.fixture(scope="session")
def lastfm_raw(lastfm_dir) -> pd.DataFrame:
    return pd.read_csv(lastfm_dir / "user_artists.dat", sep="\t")


# ---------------------------------------------------------------------------------------------


def test_ml100k_published_statistics(ml100k_dir):
    d = load_recbole(ml100k_dir, title_normalizer="movielens")
    assert d.raw_stats["users"] == 943
    assert d.raw_stats["items"] == 1682
    assert d.raw_stats["interactions"] == 100_000
    assert d.raw_stats["user_file_rows"] == 943
    titles = set(d.items["title"])
    assert "The Usual Suspects" in titles and "Toy Story" in titles
    assert not any(t.endswith(", The") for t in titles)


def test_lastfm_published_statistics(lastfm_dir):
    d = load_lastfm(lastfm_dir)
    assert d.raw_stats["users"] == 1892
    assert d.raw_stats["items"] == 17632
    assert d.raw_stats["interactions"] == 92834
    assert d.raw_stats["tag_assignments"] == 186479
    assert d.info["pairs_tagged"] + d.info["pairs_untagged"] == 92834


def test_ml100k_outputs(ml100k_out, ml100k_raw, check):
    res = check(ml100k_out, _interacted(ml100k_raw, "user_id:token", "item_id:token"))
    stats = res["stats"]
    assert stats["raw"] == {
        "users": 943,
        "items": 1682,
        "interactions": 100000,
        "items_with_interactions": 1682,
        "user_file_rows": 943,
    }
    # item 267 has no title ("unkonwn" in RecBole's copy): dropped and counted, with its ratings
    n267 = int((ml100k_raw["item_id:token"] == 267).sum())
    assert stats["dropped"]["items_without_title"] == 1
    assert stats["dropped"]["interactions_item_without_title"] == n267
    assert stats["clean"]["interactions"] == 100000 - n267
    ups = stats["users_per_split"]
    assert sum(ups.values()) == 943 and ups["valid"] == ups["test"] == 94
    # every window of every user: sum over users of (length - 3)
    kept = ml100k_raw[ml100k_raw["item_id:token"] != 267]
    length = kept.groupby(kept["user_id:token"].astype(str)).size()
    for split in ("train", "valid", "test"):
        assert stats["samples"][split] == int(sum(length[u] - 3 for u in res["users"][split]))
    # chronological histories, all before the target
    ts = {
        (str(u), str(i)): t
        for u, i, t in zip(ml100k_raw["user_id:token"], ml100k_raw["item_id:token"], ml100k_raw["timestamp:float"])
    }
    c = res["cols"]["test"]
    ho = c["hist_offsets"]
    for r, u in enumerate(c["user"]):
        times = [ts[(u, i)] for i in c["hist"][ho[r] : ho[r + 1]]] + [ts[(u, c["target"][r])]]
        assert times == sorted(times)
    assert all(f in stats["outputs"] for f in OUTPUT_FILES if f != "stats.json")


def test_lastfm_outputs(lastfm_out, lastfm_raw, lastfm_dir, check):
    res = check(lastfm_out, _interacted(lastfm_raw, "userID", "artistID"))
    stats = res["stats"]
    assert stats["raw"]["users"] == 1892 and stats["raw"]["items"] == 17632 and stats["raw"]["interactions"] == 92834
    assert stats["clean"]["interactions"] == 92834
    short = int((lastfm_raw.groupby("userID").size() < 4).sum())
    assert stats["dropped"] == {"users_too_short_for_a_sample": short}
    # order: tagged pairs by earliest tag date, then untagged ones by descending play count
    tags = pd.read_csv(lastfm_dir / "user_taggedartists.dat", sep="\t")
    tags["t"] = tags["year"] * 10000 + tags["month"] * 100 + tags["day"]
    first = tags.groupby(["userID", "artistID"])["t"].min().to_dict()
    weight = {(u, a): w for u, a, w in zip(lastfm_raw["userID"], lastfm_raw["artistID"], lastfm_raw["weight"])}
    c = res["cols"]["valid"]
    ho = c["hist_offsets"]
    for r, uid in enumerate(c["user"]):
        u = int(uid)
        seq = [int(a) for a in list(c["hist"][ho[r] : ho[r + 1]]) + [c["target"][r]]]
        keys = [(first.get((u, a), 10**9), -weight[(u, a)], a) for a in seq]
        assert keys == sorted(keys)


def test_byte_identical_reruns(ml100k_dir, lastfm_dir, ml100k_out, lastfm_out, tmp_path):
    assert main_movielens(["--raw-dir", str(ml100k_dir), "--out", str(tmp_path / "ml"), "--quiet"]) == 0
    assert main_lastfm(["--raw-dir", str(lastfm_dir), "--out", str(tmp_path / "lf"), "--quiet"]) == 0
    for a, b in ((ml100k_out, tmp_path / "ml"), (lastfm_out, tmp_path / "lf")):
        names = sorted(p.name for p in a.iterdir())
        assert names == sorted(OUTPUT_FILES) == sorted(p.name for p in b.iterdir())
        for name in names:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_other_seed_changes_samples(ml100k_dir, ml100k_out, tmp_path):
    assert (
        main_movielens(
            [
                "--raw-dir",
                str(ml100k_dir),
                "--out",
                str(tmp_path / "s7"),
                "--quiet",
                "--seed",
                "7",
                "--max-train-samples-per-user",
                "2",
            ]
        )
        == 0
    )
    assert (tmp_path / "s7" / "test.parquet").read_bytes() != (ml100k_out / "test.parquet").read_bytes()
    stats = json.loads((tmp_path / "s7" / "stats.json").read_text())
    assert stats["samples"]["train"] == 2 * stats["users_per_split"]["train"]


def test_verl_reads_the_parquet_like_main_ppo(lastfm_out, tmp_path):
    """verl's RLHFDataset loads the files with datasets.load_dataset('parquet')."""
    datasets = pytest.importorskip("datasets")
    from coars_verl.constants import EI_INDEX

    ds = datasets.load_dataset("parquet", data_files=str(lastfm_out / "test.parquet"), cache_dir=str(tmp_path))["train"]
    row = ds[3]
    assert isinstance(row["prompt"], list) and set(row["prompt"][0]) == {"role", "content"}
    assert isinstance(row["extra_info"], dict) and row["extra_info"][EI_INDEX] == 3
    assert isinstance(row["extra_info"]["candidate_titles"], list)
    assert row["reward_model"]["ground_truth"] == row["extra_info"]["target_title"]
    schema = pq.read_schema(lastfm_out / "test.parquet")
    assert schema.metadata is None or b"pandas" not in schema.metadata


def test_dialogue_accepts_every_sample(ml100k_out, lastfm_out):
    """The dialogue's own parser takes the rows; exactly one candidate is the target (by id and by title)."""
    state = pytest.importorskip("coars_verl.dialogue.state")
    from coars_verl.dialogue.matching import same_title

    for out in (ml100k_out, lastfm_out):
        rows = pq.read_table(out / "test.parquet", columns=["extra_info"]).slice(0, 2000).to_pylist()
        for r in rows:
            sample = state.DialogueSample.from_extra_info(r["extra_info"])
            hits = [k for k in range(len(sample.candidate_titles)) if sample.is_target(k)]
            assert len(hits) == 1
            assert sum(same_title(t, sample.target_title) for t in sample.candidate_titles) == 1


def test_the_default_negatives_keep_the_popularity_baseline_near_afls(lastfm_out, ml100k_out, tmp_path):
    """Uniform negatives over all LastFM artists hand popularity 47 % Hit@1 (AFL's own LastFM test
    set: 5.7 %); the default popularity-weighted negatives must not."""
    from coars_verl.eval.baselines import run_baselines

    for out, ceiling in ((lastfm_out, 0.10), (ml100k_out, 0.13)):
        check = json.loads((out / "stats.json").read_text())["info"]["popularity_check"]["test"]
        assert check["popularity_hit_at_1"] < ceiling, check
        assert check["negative_train_count_median"] >= 0.4 * check["target_train_count_median"], check
        measured = {r["label"]: r for r in run_baselines(out, None, tasks=["dialogue"])}["popularity"]
        assert measured["metrics"]["recommendation"]["hit_at_1"] == pytest.approx(check["popularity_hit_at_1"])


def test_the_tagged_item_pool_keeps_only_artists_someone_tagged(lastfm_dir):
    from coars_verl.datasets.loaders import load_lastfm

    tagged_artists = set(pd.read_csv(lastfm_dir / "user_taggedartists.dat", sep="\t")["artistID"])
    full = load_lastfm(lastfm_dir)
    pool = load_lastfm(lastfm_dir, item_pool="tagged")
    kept = set(pool.interactions["item_id"].astype(int))
    assert kept <= tagged_artists and len(kept) < len(set(full.interactions["item_id"].astype(int)))
    assert pool.drops.get("lastfm_interactions_on_never_tagged_artists") == len(full.interactions) - len(pool.interactions) > 0
    with pytest.raises(ValueError, match="item_pool"):
        load_lastfm(lastfm_dir, item_pool="popular")
