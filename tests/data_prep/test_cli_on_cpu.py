"""The data_prep scripts as users run them, --download wiring (without network), cheap imports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coars_verl.datasets import download as dl
from coars_verl.datasets.cli import main_instruments, main_lastfm, main_movielens

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPTS = ["movielens.py", "lastfm.py", "instruments.py", "recbole_atomic.py", "benchmark.py"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"COARS_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_show_help(script):
    r = _run(f"data_prep/{script}", "--help")
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout


def test_script_end_to_end_prints_a_summary(fx, tmp_path):
    raw = fx.lastfm(tmp_path / "raw")
    r = _run("data_prep/lastfm.py", "--raw-dir", str(raw), "--out", str(tmp_path / "out"), "--num-candidates", "10")
    assert r.returncode == 0, r.stderr
    for word in ("coars/lastfm", "raw", "clean", "samples", "user-sim", "items_without_title=1"):
        assert word in r.stdout
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["protocol"]["num_candidates"] == 10
    r = _run("data_prep/lastfm.py", "--raw-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "missing" in r.stderr


def test_bad_options_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main_movielens(["--raw-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--split", "8:1"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main_lastfm(["--raw-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--num-candidates", "0"])
    assert e.value.code == 2


def test_download_table():
    for key in ("ml-100k", "ml-1m", "lastfm", "amazon2018", "amazon2023"):
        assert dl.DOWNLOADS[key] and all(d.url.startswith("https://") for d in dl.DOWNLOADS[key])
    assert dl.DOWNLOADS["ml-100k"][0].url == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert "hetrec2011-lastfm-2k.zip" in dl.DOWNLOADS["lastfm"][0].url
    with pytest.raises(dl.DownloadError):
        dl.download("lcrec", "/nonexistent")


def _zip_of(folder: Path, prefix: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, f"{prefix}{p.name}")
    return buf.getvalue()


def test_download_flag_is_wired(fx, tmp_path, monkeypatch):
    src = fx.ml100k(tmp_path / "src")
    payload = _zip_of(src, "ml-100k/")
    fetched = []

    def fake_fetch(url, dest, quiet, timeout):
        fetched.append(url)
        Path(dest).write_bytes(payload)

    monkeypatch.setattr(dl, "_fetch", fake_fetch)
    raw = tmp_path / "raw"
    assert (
        main_movielens(
            ["--variant", "ml-100k", "--download", "--raw-dir", str(raw), "--out", str(tmp_path / "o"), "--quiet"]
        )
        == 0
    )
    assert fetched == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert (raw / "ml-100k" / "u.data").is_file() and (tmp_path / "o" / "train.parquet").is_file()
    # files already there: no second download
    assert (
        main_movielens(
            ["--variant", "ml-100k", "--download", "--raw-dir", str(raw), "--out", str(tmp_path / "o"), "--quiet"]
        )
        == 0
    )
    assert len(fetched) == 1


def test_download_flag_for_lastfm_and_amazon(fx, tmp_path, monkeypatch):
    lf = fx.lastfm(tmp_path / "lf")
    am = fx.amazon2018(tmp_path / "am")
    fetched = []

    def fake_fetch(url, dest, quiet, timeout):
        fetched.append(url)
        dest = Path(dest)
        if dest.name.endswith(".zip"):
            dest.write_bytes(_zip_of(lf, ""))
        else:
            dest.write_bytes((am / dest.name).read_bytes())

    monkeypatch.setattr(dl, "_fetch", fake_fetch)
    assert main_lastfm(["--download", "--raw-dir", str(tmp_path / "r1"), "--out", str(tmp_path / "o1"), "--quiet"]) == 0
    assert (
        main_instruments(
            [
                "--format",
                "amazon2018",
                "--download",
                "--raw-dir",
                str(tmp_path / "r2"),
                "--out",
                str(tmp_path / "o2"),
                "--quiet",
                "--core",
                "0",
            ]
        )
        == 0
    )
    assert fetched == [dl.DOWNLOADS["lastfm"][0].url] + [d.url for d in dl.DOWNLOADS["amazon2018"]]


def test_download_needs_a_known_format(tmp_path, capsys):
    assert main_movielens(["--download", "--raw-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--variant" in capsys.readouterr().err
    assert (
        main_instruments(
            ["--format", "lcrec", "--download", "--raw-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]
        )
        == 2
    )
    assert "LC-Rec" in capsys.readouterr().err


def test_zip_members_cannot_escape(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "x")
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    from coars_verl.datasets.errors import DataFormatError

    with pytest.raises(DataFormatError):
        dl._safe_extract(tmp_path / "a.zip", tmp_path / "raw")
    assert not (tmp_path / "evil.txt").exists()


def test_import_is_light():
    code = (
        "import sys, coars_verl.datasets, coars_verl.datasets.cli; "
        "print(any(m in sys.modules for m in ('torch', 'verl', 'transformers', 'datasets')))"
    )
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_inconsistent_options_exit_2(fx, tmp_path, capsys):
    raw = fx.lastfm(tmp_path / "raw")
    assert (
        main_lastfm(
            ["--raw-dir", str(raw), "--out", str(tmp_path / "o"), "--quiet", "--max-history", "2", "--min-history", "3"]
        )
        == 2
    )
    assert "min_history" in capsys.readouterr().err
