"""Every input format, on small fixtures written in the official layouts (tests/data_prep/conftest.py)."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from coars_verl.datasets.cli import main_instruments, main_lastfm, main_movielens, main_recbole
from coars_verl.datasets import loaders
from coars_verl.datasets.protocol import ProtocolConfig, prepare


def interacted_from(rows, user=str, item=str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for u, i, _ in rows:
        out[user(u)].add(item(i))
    return out


def test_movielens_100k_raw(fx, tmp_path, check):
    rows = fx.log()
    raw = fx.ml100k(tmp_path / "raw", rows)
    d = loaders.load_movielens_100k(raw)
    assert d.raw_stats == {
        "users": 12,
        "items": 40,
        "interactions": len(rows),
        "items_with_interactions": len({i for _, i, _ in rows}),
        "user_file_rows": 12,
    }
    titles = dict(zip(d.items["item_id"], d.items["title"]))
    assert titles["3"] == "The Matrix"
    assert titles["4"] == "La Cité des enfants perdus"  # latin-1 decoded, article moved
    assert titles["8"] == "L'Amour"
    assert titles["10"] == "A Film Number 10"
    assert titles["7"] == ""  # "unknown" -> no title
    out = tmp_path / "out"
    assert main_movielens(["--raw-dir", str(raw), "--out", str(out), "--quiet"]) == 0
    res = check(out, interacted_from(rows))
    stats = res["stats"]
    assert stats["dataset"] == "movielens-100k" and stats["format"] == "ml-100k"
    assert stats["dropped"]["items_without_title"] == 1
    assert stats["dropped"]["interactions_item_without_title"] == sum(1 for _, i, _ in rows if i == 7)
    # films sharing a title are told apart by year
    used = {i for _, i, _ in rows}
    assert {5, 6} <= used
    assert res["titles"]["5"] == "Psycho (1960)" and res["titles"]["6"] == "Psycho (1998)"


def test_movielens_order_is_time_then_item_id(fx, tmp_path):
    rows = [(1, 5, 100), (1, 3, 100), (1, 9, 50), (1, 4, 300), (1, 12, 200), (2, 1, 1), (2, 2, 2), (2, 3, 3), (2, 4, 4)]
    raw = fx.ml100k(tmp_path / "raw", rows)
    prep = prepare(loaders.load_movielens_100k(raw), ProtocolConfig(split_ratios=(1, 0, 0), num_candidates=3))
    tr = prep.splits["train"]
    ids = prep.item_ids
    u1 = [k for k in range(len(tr)) if prep.user_ids[tr.user[k]] == "1"]
    seqs = [list(ids[tr.hist_items[tr.hist_offsets[k] : tr.hist_offsets[k + 1]]]) + [ids[tr.target[k]]] for k in u1]
    assert seqs[-1] == ["9", "3", "5", "12", "4"]  # t=50, then the tie at t=100 by item id (3 < 5), 200, 300
    assert len(u1) == 2  # windows with history >= 3


def test_movielens_1m_raw(fx, tmp_path, check):
    rows = fx.log(seed=1)
    raw = fx.ml1m(tmp_path / "ml-1m-parent" / "ml-1m", rows)
    d = loaders.load_movielens_1m(raw.parent)  # the unpacked archive folder is found one level down
    assert d.raw_stats["interactions"] == len(rows) and d.raw_stats["user_file_rows"] == 12
    assert dict(zip(d.items["item_id"], d.items["title"]))["3"] == "The Matrix"
    out = tmp_path / "out"
    assert main_movielens(["--raw-dir", str(raw.parent), "--out", str(out), "--quiet"]) == 0
    res = check(out, interacted_from(rows))
    assert res["stats"]["dataset"] == "movielens-1m"


@pytest.mark.parametrize("kind", ["dates", "timestamps"])
def test_lastfm_raw_both_tag_files(fx, tmp_path, check, kind):
    rows = fx.log(seed=2)
    raw = fx.lastfm(tmp_path / "raw", rows, timestamps=kind == "timestamps", dates=kind == "dates")
    d = loaders.load_lastfm(raw)
    assert kind in d.info["order_source"] or (kind == "dates" and "day/month/year" in d.info["order_source"])
    assert d.raw_stats["interactions"] == len(rows) and d.raw_stats["items"] == 40
    assert d.info["tagged_pairs_without_play_count"] == 1
    names = dict(zip(d.items["item_id"], d.items["title"]))
    assert names["6"] == "Sigur Rós" and names["7"] == 'The "Quoted" Band'
    out = tmp_path / "out"
    assert main_lastfm(["--raw-dir", str(raw), "--out", str(out), "--quiet"]) == 0
    res = check(out, interacted_from(rows))
    stats = res["stats"]
    assert stats["dropped"]["items_without_title"] == 1  # artist 5 has an empty name
    assert res["titles"]["3"] == "Björk" and res["titles"]["4"] == "björk (2)"  # same name up to case


def test_lastfm_untagged_policies(fx, tmp_path):
    rows = fx.log(seed=3)
    raw = fx.lastfm(tmp_path / "raw", rows, untagged_every=2)
    base = ProtocolConfig(split_ratios=(1, 0, 0), min_history=1, num_candidates=5)
    after = prepare(loaders.load_lastfm(raw, untagged="after"), base)
    before = prepare(loaders.load_lastfm(raw, untagged="before"), base)
    dropped = prepare(loaders.load_lastfm(raw, untagged="drop"), base)
    n_untagged = loaders.load_lastfm(raw).info["pairs_untagged"]
    assert dropped.drops.get("lastfm_untagged_pairs_out_of_sequence") == n_untagged
    usable = len(rows) - sum(1 for _, i, _ in rows if i == 5)  # artist 5 has no name
    untagged = {(u, i) for n, (u, i, _) in enumerate(sorted(rows)) if n % 2 == 0}  # as the fixture writes them
    assert len(untagged) == n_untagged
    untagged_usable = sum(1 for _, i in untagged if i != 5)
    assert dropped.clean_stats["sequence_interactions"] == usable - untagged_usable
    assert after.clean_stats["sequence_interactions"] == before.clean_stats["sequence_interactions"] == usable
    # dropped pairs are still never used as negatives
    inter = interacted_from(rows)
    tr = dropped.splits["train"]
    for k in range(len(tr)):
        u = dropped.user_ids[tr.user[k]]
        negs = set(dropped.item_ids[tr.candidates[k]]) - {dropped.item_ids[tr.target[k]]}
        assert not negs & inter[u]


@pytest.mark.parametrize("gz", [True, False])
def test_amazon2018(fx, tmp_path, check, gz):
    rows = fx.log(seed=4)
    raw = fx.amazon2018(tmp_path / "raw", rows, gz=gz)
    d = loaders.load_amazon2018(raw, quiet=True)
    assert d.drops.get("duplicate_item_rows") == 1
    titles = dict(zip(d.items["item_id"], d.items["title"]))
    assert titles[fx.asin(5)] == "Fender Strings & Picks"
    out = tmp_path / "out"
    assert main_instruments(["--raw-dir", str(raw), "--out", str(out), "--quiet", "--core", "0"]) == 0
    res = check(out, interacted_from(rows, item=fx.asin, user=lambda u: f"A{u:05d}XYZ"))
    stats = res["stats"]
    assert stats["format"] == "amazon2018" and stats["data_source"] == "coars/instruments"
    used = {i for _, i, _ in rows}
    assert stats["dropped"]["items_without_title"] == len({3, 4} & used)
    if {6, 7} <= used:
        assert res["titles"][fx.asin(6)] == "Guitar Tuner" and res["titles"][fx.asin(7)] == "guitar tuner (2)"


def test_amazon2023_and_gz(fx, tmp_path, check):
    rows = fx.log(seed=5)
    raw = fx.amazon2023(tmp_path / "raw", rows, gz=True)
    d = loaders.load_amazon2023(raw, quiet=True)
    assert set(d.interactions["item_id"]) <= {fx.asin(i) for i in range(1, 41)}  # parent_asin, not asin
    out = tmp_path / "out"
    assert main_instruments(["--raw-dir", str(raw), "--out", str(out), "--quiet", "--core", "0"]) == 0
    res = check(out, interacted_from(rows, item=fx.asin, user=lambda u: f"AE{u:06d}"))
    assert res["stats"]["format"] == "amazon2023"


def test_instruments_k_core_default(fx, tmp_path):
    rows = fx.log(seed=5)
    raw = fx.amazon2023(tmp_path / "raw", rows)
    out = tmp_path / "out"
    assert main_instruments(["--raw-dir", str(raw), "--out", str(out), "--quiet", "--num-candidates", "5"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["protocol"]["core"] == 5
    assert stats["clean"]["interactions"] + stats["dropped"].get("interactions_removed_by_k_core", 0) + stats[
        "dropped"
    ].get("interactions_item_without_title", 0) == len(rows)


def test_lcrec(fx, tmp_path, check):
    rows = fx.log(seed=6)
    raw = fx.lcrec(tmp_path / "raw", rows)
    d = loaders.load_lcrec(raw)
    assert d.raw_stats["interactions"] == len(rows) and d.raw_stats["users"] == 12
    out = tmp_path / "out"
    assert main_instruments(["--raw-dir", str(raw), "--out", str(out), "--quiet", "--core", "0"]) == 0
    res = check(out, interacted_from(rows, user=lambda u: str(u - 1), item=lambda i: str(i - 1)))
    assert res["stats"]["format"] == "lcrec"


@pytest.mark.parametrize("with_time", [True, False])
def test_recbole_generic(fx, tmp_path, check, with_time):
    rows = fx.log(seed=7)
    raw = fx.recbole(tmp_path / "raw", "toy", rows, with_time=with_time)
    d = loaders.load_recbole(raw)
    assert d.info["fields"] == {
        "user": "user_id",
        "item": "item_id",
        "time": "timestamp" if with_time else None,
        "title": "title",
    }
    assert d.raw_stats["user_file_rows"] == 12
    out = tmp_path / "out"
    assert main_recbole(["--raw-dir", str(raw), "--out", str(out), "--quiet"]) == 0
    res = check(out, interacted_from(rows))
    assert res["stats"]["dataset"] == "toy" and res["stats"]["format"] == "recbole"


def test_recbole_through_each_dataset_script(fx, tmp_path):
    rows = fx.log(seed=8)
    raw = fx.recbole(tmp_path / "raw", "ml-100k", rows, title_field="movie_title")
    out = tmp_path / "ml"
    assert main_movielens(["--raw-dir", str(raw), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "stats.json").read_text())["dataset"] == "movielens-100k"
    raw2 = fx.recbole(tmp_path / "raw2", "lastfm", rows, title_field="name")
    assert main_lastfm(["--raw-dir", str(raw2), "--out", str(tmp_path / "lf"), "--quiet"]) == 0
    raw3 = fx.recbole(tmp_path / "raw3", "Amazon_Musical_Instruments", rows)
    assert (
        main_instruments(
            [
                "--raw-dir",
                str(raw3),
                "--out",
                str(tmp_path / "am"),
                "--quiet",
                "--core",
                "0",
                "--name",
                "instruments-recbole",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "am" / "stats.json").read_text())["data_source"] == "coars/instruments-recbole"


def test_empty_splits_are_valid_files(fx, tmp_path):
    import pyarrow.parquet as pq

    raw = fx.recbole(tmp_path / "raw", "toy")
    out = tmp_path / "out"
    assert main_recbole(["--raw-dir", str(raw), "--out", str(out), "--quiet", "--split", "1:0:0"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples"]["valid"] == stats["samples"]["test"] == 0 and stats["samples"]["train"] > 0
    for name in ("valid.parquet", "test.parquet", "user_sim_test.parquet"):
        t = pq.read_table(out / name)
        assert t.num_rows == 0
    assert pq.read_schema(out / "valid.parquet") == pq.read_schema(out / "train.parquet")
