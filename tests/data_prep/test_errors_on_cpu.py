"""Bad input: a clear DataFormatError naming file, line and expectation, or a counted drop."""

from __future__ import annotations

import gzip
import json

import pytest

from coars_verl.datasets.cli import main_instruments, main_lastfm, main_movielens, main_recbole
from coars_verl.datasets.errors import DataFormatError, DropCounter
from coars_verl.datasets import loaders
from coars_verl.datasets.protocol import prepare


def _raises(fn, *args, **kw) -> DataFormatError:
    with pytest.raises(DataFormatError) as ei:
        fn(*args, **kw)
    return ei.value


def test_missing_file_and_folder(fx, tmp_path):
    e = _raises(loaders.load_movielens_100k, tmp_path)
    assert "u.data" in str(e) and "no such file" in str(e)
    e = _raises(loaders.load_lastfm, tmp_path / "nope")
    assert "no such folder" in str(e)
    raw = fx.lastfm(tmp_path / "lf", dates=False)
    e = _raises(loaders.load_lastfm, raw)
    assert "user_taggedartists" in str(e)


def test_ml100k_wrong_field_count_names_the_line(fx, tmp_path):
    rows = fx.log()
    raw = fx.ml100k(tmp_path, rows, extra_data_lines=["1\t2\t3"])
    e = _raises(loaders.load_movielens_100k, raw)
    assert e.path.endswith("u.data") and e.line == len(rows) + 1
    assert "4 tab-separated fields" in str(e) and f"line {len(rows) + 1}" in str(e)


def test_ml100k_non_integer_id(fx, tmp_path):
    rows = fx.log()
    raw = fx.ml100k(tmp_path, rows, extra_data_lines=["7\tabc\t3\t881250949"])
    e = _raises(loaders.load_movielens_100k, raw)
    assert e.line == len(rows) + 1 and "integer" in str(e) and "item_id" in str(e) and "'abc'" in str(e)


def test_ml100k_item_file_wrong_layout(fx, tmp_path):
    raw = fx.ml100k(tmp_path, item_lines=["41|Short line|01-Jan-1995"])
    e = _raises(loaders.load_movielens_100k, raw)
    assert e.path.endswith("u.item") and e.line == 41 and "24 '|'-separated fields" in str(e)


def test_ml1m_malformed_rating(fx, tmp_path):
    rows = fx.log()
    raw = fx.ml1m(tmp_path, rows, extra_rating_lines=["1::2::3"])
    e = _raises(loaders.load_movielens_1m, raw)
    assert e.path.endswith("ratings.dat") and e.line == len(rows) + 1 and "'::'" in str(e)


def test_blank_lines_are_counted_not_fatal(fx, tmp_path):
    rows = fx.log()
    raw = fx.ml100k(tmp_path, rows, extra_data_lines=["", "   "])
    d = loaders.load_movielens_100k(raw)
    assert d.drops.get("blank_lines") == 2 and len(d.interactions) == len(rows)


def test_lastfm_wrong_header(fx, tmp_path):
    raw = fx.lastfm(tmp_path)
    p = raw / "user_artists.dat"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(["user\tartist\tplays"] + lines[1:]) + "\n")
    e = _raises(loaders.load_lastfm, raw)
    assert e.line == 1 and "userID" in str(e) and "user_artists.dat" in str(e)


def test_lastfm_invalid_utf8_and_encoding_override(fx, tmp_path):
    raw = fx.lastfm(tmp_path, artist_extra=["41\tMot\xf6rhead\thttp://x\thttp://y"])
    p = raw / "artists.dat"
    p.write_bytes(p.read_bytes().replace("Mot\xf6rhead".encode("utf-8"), b"Mot\xf6rhead"))  # latin-1 byte
    e = _raises(loaders.load_lastfm, raw)
    assert e.path.endswith("artists.dat") and e.line == 42 and "utf-8" in str(e) and "--encoding" in str(e)
    e = _raises(loaders.load_lastfm, raw, encoding="no-such-codec")
    assert "known text encoding" in str(e) and "no-such-codec" in str(e)


def test_lastfm_invalid_date(fx, tmp_path):
    raw = fx.lastfm(tmp_path)
    p = raw / "user_taggedartists.dat"
    lines = p.read_text().splitlines()
    lines[5] = "\t".join(lines[5].split("\t")[:4] + ["13", "2009"])
    p.write_text("\n".join(lines) + "\n")
    e = _raises(loaders.load_lastfm, raw)
    assert e.line == 6 and "calendar date" in str(e)


def test_amazon2018_bad_json_line(fx, tmp_path):
    rows = fx.log()
    raw = fx.amazon2018(tmp_path, rows, review_raw_lines=['{"reviewerID": "A1", "asin": '])
    e = _raises(loaders.load_amazon2018, raw, quiet=True)
    assert e.path.endswith("Musical_Instruments_5.json.gz") and e.line == len(rows) + 1
    assert "one JSON object per line" in str(e)


def test_amazon2018_missing_key(fx, tmp_path):
    rows = fx.log()
    raw = fx.amazon2018(
        tmp_path / "a", rows, gz=False, review_raw_lines=[json.dumps({"reviewerID": "A1", "unixReviewTime": 1})]
    )
    e = _raises(loaders.load_amazon2018, raw, quiet=True)
    assert e.line == len(rows) + 1 and "'asin'" in str(e) and "missing" in str(e)
    raw = fx.amazon2018(tmp_path / "b", rows, gz=False, meta_raw_lines=["[1, 2]"])
    e = _raises(loaders.load_amazon2018, raw, quiet=True)
    assert e.path.endswith("meta_Musical_Instruments.json") and "one JSON object per line" in str(e)


def test_amazon2023_bad_timestamp_and_truncated_gzip(fx, tmp_path):
    rows = fx.log()
    raw = fx.amazon2023(
        tmp_path / "a",
        rows,
        review_raw_lines=[json.dumps({"user_id": "U", "parent_asin": "B1", "timestamp": "yesterday"})],
    )
    e = _raises(loaders.load_amazon2023, raw, quiet=True)
    assert e.line == len(rows) + 1 and "'timestamp'" in str(e)
    raw = fx.amazon2023(tmp_path / "b", rows, gz=True)
    p = raw / "Musical_Instruments.jsonl.gz"
    p.write_bytes(p.read_bytes()[:-20])
    e = _raises(loaders.load_amazon2023, raw, quiet=True)
    assert "Musical_Instruments.jsonl.gz" in str(e)


def test_lcrec_errors(fx, tmp_path):
    raw = fx.lcrec(tmp_path)
    p = raw / "Instruments.inter.json"
    p.write_text('{\n  "0": [1, 2,\n}')
    e = _raises(loaders.load_lcrec, raw)
    assert e.path.endswith("Instruments.inter.json") and e.line == 3
    p.write_text(json.dumps({"0": [1, 2], "1": "not a list"}))
    e = _raises(loaders.load_lcrec, raw)
    assert "'1'" in str(e) and "list of item ids" in str(e)


def test_recbole_errors(fx, tmp_path):
    raw = fx.recbole(tmp_path / "a", "toy")
    p = raw / "toy.inter"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(["user_id:tok\titem_id:token\trating:float\ttimestamp:float"] + lines[1:]) + "\n")
    e = _raises(loaders.load_recbole, raw)
    assert e.line == 1 and "name:type" in str(e)
    raw = fx.recbole(tmp_path / "b", "toy", title_field="caption")
    e = _raises(loaders.load_recbole, raw)
    assert e.path.endswith("toy.item") and "title field" in str(e)
    raw = fx.recbole(tmp_path / "c", "toy", extra_inter_lines=["1\t2\t3.0\tnoon"])
    e = _raises(loaders.load_recbole, raw)
    assert "timestamp" in str(e) and e.line == len(lines) + 1
    raw = fx.recbole(tmp_path / "d", "toy", extra_inter_lines=["1\t2\t3.0"])
    e = _raises(loaders.load_recbole, raw)
    assert e.line == len(lines) + 1 and "4 tab-separated fields" in str(e)


def test_unknown_items_and_duplicates_are_counted(fx, tmp_path):
    rows = fx.log()
    raw = fx.ml100k(tmp_path, rows + [rows[0], (1, 99, 880000000)])  # a repeated rating and an unknown item 99
    d = loaders.load_movielens_100k(raw)
    prep = prepare(d)
    assert prep.drops.get("interactions_unknown_item") == 1
    assert prep.drops.get("duplicate_interactions") == 1


def test_drop_counter():
    c = DropCounter({"b": 1})
    c.add("a", 2)
    c.add("a")
    c.add("z", 0)
    assert c.as_dict() == {"a": 3, "b": 1} and c.get("z") == 0
    with pytest.raises(ValueError):
        c.add("a", -1)


@pytest.mark.parametrize(
    "main,writer,args",
    [
        (main_movielens, "ml100k", []),
        (main_lastfm, "lastfm", []),
        (main_instruments, "amazon2018", ["--core", "0"]),
        (main_recbole, "recbole", []),
    ],
)
def test_cli_exits_2_with_a_clean_message(fx, tmp_path, capsys, main, writer, args):
    raw = getattr(fx, writer)(tmp_path / "raw")
    victim = sorted(p for p in raw.iterdir() if p.is_file())[-1]
    if victim.name.endswith(".gz"):
        with gzip.open(victim, "ab") as f:
            f.write(b"\x00garbage\tline\n")
    else:
        with open(victim, "ab") as f:
            f.write(b"garbage\n")
    out = tmp_path / "out"
    rc = main(["--raw-dir", str(raw), "--out", str(out), "--quiet"] + args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and victim.name in err and "line" in err and "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
