"""Atomic and deterministic writing."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coars_verl.datasets import writer
from coars_verl.datasets.cli import main_lastfm
from coars_verl.datasets.writer import atomic_output_dir, atomic_write_bytes, write_json, write_parquet


def _table():
    return pa.table({"a": pa.array([1, 2, 3]), "b": pa.array([["x"], [], ["y", "z"]], pa.list_(pa.string()))})


def test_parquet_bytes_are_deterministic(tmp_path):
    write_parquet(_table(), tmp_path / "a.parquet")
    write_parquet(_table().replace_schema_metadata({"k": "v"}), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert (
        pq.read_schema(tmp_path / "a.parquet").metadata is None
        or b"pandas" not in pq.read_schema(tmp_path / "a.parquet").metadata
    )


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.parquet"
    write_parquet(_table(), target)
    before = target.read_bytes()

    def boom(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.pq, "write_table", boom)
    with pytest.raises(KeyboardInterrupt):
        write_parquet(_table(), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_atomic_json_and_bytes(tmp_path):
    write_json({"b": 1, "a": [1, "é"]}, tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text("utf-8")) == {"b": 1, "a": [1, "é"]}
    atomic_write_bytes(tmp_path / "sub" / "f.bin", b"123")
    assert (tmp_path / "sub" / "f.bin").read_bytes() == b"123"


def test_output_dir_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "stats.json").write_text(json.dumps({"generator": writer.GENERATOR}))
        (tmp / "a.txt").write_text("v1")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "v1"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(out) as tmp:
            (tmp / "a.txt").write_text("v2")
            raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "v1"
    with atomic_output_dir(out) as tmp:  # our own folder is replaced as a whole
        (tmp / "stats.json").write_text(json.dumps({"generator": writer.GENERATOR}))
        (tmp / "b.txt").write_text("v3")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt", "stats.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_foreign_folder_is_never_replaced(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError):
        with atomic_output_dir(out):
            pass
    assert (out / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_cli_interrupted_mid_write_leaves_nothing(fx, tmp_path, monkeypatch, capsys):
    raw = fx.lastfm(tmp_path / "raw")
    out = tmp_path / "out"
    assert main_lastfm(["--raw-dir", str(raw), "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from coars_verl.datasets import pipeline

    real = pipeline.user_sim_table

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "user_sim_table", interrupted)
    assert main_lastfm(["--raw-dir", str(raw), "--out", str(out), "--quiet", "--seed", "3"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]
    monkeypatch.setattr(pipeline, "user_sim_table", real)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    assert main_lastfm(["--raw-dir", str(raw), "--out", str(foreign), "--quiet"]) == 2
    assert "not written by data_prep" in capsys.readouterr().err
