"""data_prep/llara.py: LLaRA/AFL folders imported as they ship, with their own candidate draw.

Real data: AFL's LastFM files in ``<repo root>/../shared/data/afl-lastfm`` (read-only, never
copied). The MovieLens layout (``(id, rating)`` tuples, ``u.item``) is a small fixture written here.
"""

from __future__ import annotations

import pickle
import random
import warnings

import pandas as pd
import pyarrow.parquet as pq
import pytest

from coars_verl.datasets.cli import main_llara
from coars_verl.datasets.errors import DataFormatError
from coars_verl.datasets.llara import LlaraImportConfig, import_llara
from coars_verl.eval import data as eval_data
from coars_verl.eval.baselines import run_baselines

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

AFL_DIR = REPO_ROOT.parent / "shared" / "data" / "afl-lastfm"
PAD = 4606


@pytest.fixture(scope="module")
def afl(tmp_path_factory):
    if not (AFL_DIR / "lastfm" / "Test_data.df").is_file():
        pytest.skip(f"AFL's LastFM files not found at {AFL_DIR}")
    out = tmp_path_factory.mktemp("afl") / "lastfm"
    code = main_llara(["--raw-dir", str(AFL_DIR / "lastfm"), "--user-sim", str(AFL_DIR / "lastfm_ab" / "test_llara.pkl"),
                       "--out", str(out), "--quiet"])
    assert code == 0
    return out


def _afl_reference_draw():
    """AFL's afl/evaluate_rec.py, transliterated: the module RNG seeded once with 303, the test
    samples in order, LastfmDataset.negative_sampling per sample."""
    names = {}
    for line in (AFL_DIR / "lastfm" / "id2name.txt").read_text().splitlines():
        item, name = line.split("::", 1)
        names[int(item)] = name.strip()
    frame = pd.read_pickle(AFL_DIR / "lastfm" / "Test_data.df")
    frame = frame[frame["len_seq"] >= 3]
    state = random.getstate()
    random.seed(303)
    try:
        out = []
        for seq, target in zip(frame["seq"], frame["next"]):
            seq_unpad = [i for i in seq if i != PAD]
            canset = [i for i in list(names.keys()) if i not in seq_unpad and i != target]
            candidates = random.sample(canset, 19) + [target]
            random.shuffle(candidates)
            out.append((seq_unpad, int(target), candidates))
        return out
    finally:
        random.setstate(state)


def test_the_afl_test_set_keeps_its_samples_and_afls_own_candidates(afl):
    rows = pq.read_table(afl / "test.parquet").column("extra_info").to_pylist()
    reference = _afl_reference_draw()
    assert len(rows) == len(reference) == 122
    for row, (history, target, candidates) in zip(rows, reference):
        assert [int(i) for i in row["history_item_ids"]] == history
        assert int(row["target_item_id"]) == target
        assert [int(i) for i in row["candidate_item_ids"]] == candidates
        ids = [int(i) for i in row["candidate_item_ids"]]
        assert len(set(ids)) == 20 and ids.count(target) == 1 and not set(ids) & set(history) and PAD not in ids
        assert row["candidate_titles"][ids.index(target)] == row["target_title"]
        assert row["user_id"] == ""


def test_the_baselines_on_the_afl_test_set(afl, tmp_path):
    results = {r["label"]: r for r in run_baselines(afl, tmp_path, tasks=["dialogue"])}
    assert results["random (expected)"]["metrics"]["recommendation"]["hit_at_1"] == pytest.approx(0.05)
    popularity = results["popularity"]["metrics"]["recommendation"]["hit_at_1"]
    assert abs(popularity * 122 - 7) <= 1, popularity * 122


def test_afls_user_simulation_set_and_its_ratio(afl, tmp_path):
    users = eval_data.load_user_sim_rows(afl, "test", None)
    assert len(users) == 60 and all(sum(u.labels) == 10 and len(u.labels) == 20 for u in users)
    out = tmp_path / "one-to-three"
    assert main_llara(["--raw-dir", str(AFL_DIR / "lastfm"), "--user-sim", str(AFL_DIR / "lastfm_ab" / "test_llara.pkl"),
                       "--out", str(out), "--quiet", "--sim-b-ratio", "3"]) == 0
    users = eval_data.load_user_sim_rows(out, "test", None)
    assert all(sum(u.labels) == 5 and len(u.labels) == 20 for u in users)
    expected = run_baselines(out, None, tasks=["user_sim"])[0]["metrics"]["user_sim"]
    assert expected["precision_micro"] == pytest.approx(0.25) and expected["f1_micro"] == pytest.approx(1 / 3, abs=1e-3)


def test_one_per_user_never_groups_samples_without_a_user_id(afl):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = eval_data.load_dialogue_rows(afl, "test", None, one_per_user=True)
    assert len(rows) == 122
    assert any("no user_id" in str(w.message) for w in caught)


# ------------------------------------------------------------------------------------ MovieLens layout
def _write_movielens_folder(folder, n_items=30):
    folder.mkdir(parents=True)
    lines = [f"{i + 1}|Movie {i + 1} (1995)|01-Jan-1995||http://x|0|0" for i in range(n_items)]
    lines[2] = "3|Matrix, The (1999)|01-Jan-1999||http://x|0|0"
    lines[3] = "4|Cité des enfants perdus, La (1995)|01-Jan-1995||http://x|0|0"
    (folder / "u.item").write_bytes("\n".join(lines).encode("ISO-8859-1"))
    pad = (n_items, 0)

    def frame(rows):
        seqs = [[(i, 4) for i in seq] + [pad] * (10 - len(seq)) for seq, _ in rows]
        return pd.DataFrame({"seq": seqs, "len_seq": [len(s) for s, _ in rows], "next": [(t, 5) for _, t in rows]})

    frame([([0, 1, 2], 5), ([3, 4], 6), ([7, 8, 9, 10], 2)]).to_pickle(folder / "train_data.df")
    frame([([1, 2, 3], 12)]).to_pickle(folder / "Val_data.df")
    frame([([2, 4, 6, 8], 3), ([1, 5, 7], 11)]).to_pickle(folder / "Test_data.df")
    pd.DataFrame({"seq_size": [10], "item_num": [n_items]}).to_pickle(folder / "data_statis.df")
    return folder


def test_the_movielens_layout_tuples_titles_and_the_len_seq_filter(tmp_path):
    prep = import_llara(_write_movielens_folder(tmp_path / "movielens"), LlaraImportConfig(num_candidates=5))
    titles = list(prep.titles)
    assert titles[2] == "The Matrix" and titles[3] == "Cité des enfants perdus, La"  # LLaRA moves only The, A, An and titles[0] == "Movie 1"
    assert len(prep.splits["train"]) == 2 and prep.drops.get("train_len_seq_below_3") == 1  # ([3, 4], 6) is too short
    test = prep.splits["test"]
    assert test.target.tolist() == [3, 11]
    assert test.hist_items[test.hist_offsets[0]:test.hist_offsets[1]].tolist() == [2, 4, 6, 8]
    for k in range(len(test)):
        row = test.candidates[k].tolist()
        history = set(test.hist_items[test.hist_offsets[k]:test.hist_offsets[k + 1]].tolist())
        assert row.count(int(test.target[k])) == 1 and not set(row) & history and len(set(row)) == 5


def test_bad_folders_name_the_file_and_what_was_expected(tmp_path):
    folder = _write_movielens_folder(tmp_path / "m")
    (folder / "Val_data.df").unlink()
    with pytest.raises(DataFormatError, match="Val_data.df: expected the valid file"):
        import_llara(folder)
    pd.DataFrame({"seq": [[1, 2, 3]], "next": [4]}).to_pickle(folder / "Val_data.df")
    with pytest.raises(DataFormatError, match="Val_data.df: expected a DataFrame with columns seq, len_seq, next"):
        import_llara(folder)
    pd.DataFrame({"seq": [[(1, 3), (2, 3), (99, 3)]], "len_seq": [3], "next": [(4, 4)]}).to_pickle(folder / "Val_data.df")
    with pytest.raises(DataFormatError, match=r"row 0: item ids present in the title file; found '\[99\]'"):
        import_llara(folder)
    (folder / "Val_data.df").write_bytes(b"not a pickle")
    with pytest.raises(DataFormatError, match="Val_data.df: expected a pandas pickle"):
        import_llara(folder)
    with pytest.raises(ValueError, match="num_candidates"):
        LlaraImportConfig(num_candidates=1)


def test_a_user_simulation_file_of_the_wrong_shape_is_refused(tmp_path):
    folder = _write_movielens_folder(tmp_path / "m")
    with open(tmp_path / "sim.pkl", "wb") as f:
        pickle.dump([{"user_id": 1, "artist_list": [1, 2, 3]}], f)
    with pytest.raises(DataFormatError, match="entry 0: a dict with user_id, artist_list, full_list"):
        import_llara(folder, LlaraImportConfig(num_candidates=5), user_sim_file=tmp_path / "sim.pkl")
