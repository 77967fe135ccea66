"""The protocol (ordering, windows, split, candidates, user-simulation sets), with property tests."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coars_verl.datasets.loaders import LoadedDataset, _interactions, _items
from coars_verl.datasets.protocol import (
    InteractionSet,
    ProtocolConfig,
    _split_sizes,
    natural_order,
    prepare,
    sample_negatives,
)
from coars_verl.datasets.titles import disambiguate_titles, normalize_movielens_title


@st.composite
def datasets(draw):
    n_users = draw(st.integers(1, 14))
    n_items = draw(st.integers(5, 45))
    rows = []
    for u in range(n_users):
        k = draw(st.integers(0, min(n_items, 16)))
        items = draw(st.lists(st.integers(0, n_items - 1), min_size=k, max_size=k, unique=True))
        for i in items:
            rows.append(
                (f"u{u}" if u % 2 else str(u), str(i), float(draw(st.integers(0, 6))), float(draw(st.integers(-2, 2))))
            )
    if not rows:
        rows.append(("0", "0", 0.0, 0.0))
    titles = [draw(st.sampled_from(["Alpha", "alpha", "Beta", "", "Gamma", f"T{i}"])) for i in range(n_items)]
    cfg = ProtocolConfig(
        seed=draw(st.integers(0, 2**32 - 1)),
        max_history=draw(st.integers(1, 6)),
        min_history=1,
        num_candidates=draw(st.integers(1, 6)),
        split_ratios=draw(st.sampled_from([(8, 1, 1), (1, 1, 1), (1, 0, 0), (0, 1, 2)])),
        max_train_samples_per_user=draw(st.integers(0, 3)),
        max_eval_samples_per_user=draw(st.integers(0, 3)),
        sim_positives=draw(st.integers(1, 4)),
        sim_negative_ratio=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
    )
    cfg = ProtocolConfig(
        **{**cfg.as_dict(), "split_ratios": cfg.split_ratios, "min_history": draw(st.integers(1, cfg.max_history))}
    )
    u, i, t, tb = zip(*rows)
    data = LoadedDataset(
        "prop",
        "synthetic",
        _interactions(np.array(u, dtype=object), np.array(i, dtype=object), np.array(t), np.array(tb)),
        _items(np.array([str(x) for x in range(n_items)], dtype=object), titles),
    )
    return data, cfg


def _reference_sequences(data: LoadedDataset) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    titled = set(data.items.loc[data.items["title"] != "", "item_id"])
    df = data.interactions[data.interactions["item_id"].isin(titled)].copy()
    df["inum"] = df["item_id"].astype(int)
    df = df.sort_values(["user_id", "timestamp", "tiebreak", "inum"], kind="stable")
    seqs: dict[str, list[str]] = defaultdict(list)
    for u, i in zip(df["user_id"], df["item_id"]):
        if i not in seqs[u]:
            seqs[u].append(i)
    inter = {u: set(v) for u, v in seqs.items()}
    return dict(seqs), inter


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_protocol_invariants(case):
    data, cfg = case
    prep = prepare(data, cfg, quiet=True)
    seqs, inter = _reference_sequences(data)
    ids, uids = prep.item_ids, prep.user_ids
    titles = list(prep.titles)
    assert len({t.casefold() for t in titles}) == len(titles) and all(titles)
    seen_users: dict[str, str] = {}
    for split in ("train", "valid", "test"):
        s = prep.splits[split]
        cap = cfg.max_train_samples_per_user if split == "train" else cfg.max_eval_samples_per_user
        per_user: dict[str, list[int]] = defaultdict(list)
        for k in range(len(s)):
            u = uids[s.user[k]]
            assert seen_users.setdefault(u, split) == split, "user in two splits"
            hist = list(ids[s.hist_items[s.hist_offsets[k] : s.hist_offsets[k + 1]]])
            target = ids[s.target[k]]
            seq = seqs[u]
            t = seq.index(target)
            per_user[u].append(t)
            assert hist == seq[max(0, t - cfg.max_history) : t]
            assert cfg.min_history <= len(hist) <= cfg.max_history
            cands = list(ids[s.candidates[k]])
            assert len(cands) == len(set(cands)) == cfg.num_candidates
            assert cands.count(target) == 1
            assert not (set(cands) - {target}) & inter[u]
        for u, ts in per_user.items():
            n_win = len(seqs[u]) - cfg.min_history
            want = list(range(len(seqs[u]) - (min(n_win, cap) if cap else n_win), len(seqs[u])))
            assert ts == want  # all windows, or the most recent `cap` ones, in time order
    n_items = len(ids)
    eligible = {
        u
        for u, sq in seqs.items()
        if len(sq) >= cfg.min_history + 1 and n_items - len(inter[u]) >= cfg.num_candidates - 1
    }
    assert sum(prep.users_per_split.values()) == len(eligible)
    assert {u for u in seen_users} <= eligible
    for split in ("valid", "test"):
        sim = prep.user_sim[split]
        assert len(sim) == prep.users_per_split[split]
        for k in range(len(sim)):
            u = uids[sim.user[k]]
            seq = seqs[u]
            pos = list(ids[sim.pos_items[sim.pos_offsets[k] : sim.pos_offsets[k + 1]]])
            neg = list(ids[sim.neg_items[sim.neg_offsets[k] : sim.neg_offsets[k + 1]]])
            hist = list(ids[sim.hist_items[sim.hist_offsets[k] : sim.hist_offsets[k + 1]]])
            n_pos = min(cfg.sim_positives, len(seq) - cfg.min_history)
            assert pos == seq[len(seq) - n_pos :]
            assert hist == seq[max(0, len(seq) - n_pos - cfg.max_history) : len(seq) - n_pos]
            assert (
                len(neg)
                == len(set(neg))
                == min(int(np.floor(n_pos * cfg.sim_negative_ratio + 0.5)), n_items - len(inter[u]))
            )
            assert not set(neg) & inter[u]
            judge = list(ids[sim.judge_items[sim.judge_offsets[k] : sim.judge_offsets[k + 1]]])
            labels = list(sim.judge_labels[sim.judge_offsets[k] : sim.judge_offsets[k + 1]])
            assert sorted(judge) == sorted(pos + neg) and labels == [j in pos for j in judge]
    # deterministic
    again = prepare(data, cfg, quiet=True)
    for split in ("train", "valid", "test"):
        a, b = prep.splits[split], again.splits[split]
        assert np.array_equal(a.candidates, b.candidates) and np.array_equal(a.hist_items, b.hist_items)


def test_sample_negatives_is_uniform_and_excludes():
    inter = InteractionSet(np.zeros(5, dtype=np.int64), np.arange(5), 1, 15)
    rng = np.random.default_rng(0)
    out = sample_negatives(rng, np.zeros(20000, dtype=np.int64), 3, inter)
    assert (out >= 5).all()
    srt = np.sort(out, axis=1)
    assert not (srt[:, 1:] == srt[:, :-1]).any()
    counts = np.bincount(out.reshape(-1), minlength=15)[5:]
    assert np.abs(counts / counts.mean() - 1).max() < 0.05
    # the dense bitmap and the sorted-key lookups agree
    sparse = InteractionSet(np.zeros(5, dtype=np.int64), np.arange(5), 1, 15)
    sparse.dense = None
    q_u, q_i = np.zeros(15, dtype=np.int64), np.arange(15)
    assert np.array_equal(inter.contains(q_u, q_i), sparse.contains(q_u, q_i))


def test_sample_negatives_when_almost_everything_was_seen():
    inter = InteractionSet(np.zeros(97, dtype=np.int64), np.arange(97), 1, 100)
    out = sample_negatives(np.random.default_rng(1), np.zeros(50, dtype=np.int64), 3, inter, max_rounds=1)
    assert (np.sort(out, axis=1) == [97, 98, 99]).all()
    with pytest.raises(ValueError):
        sample_negatives(np.random.default_rng(1), np.zeros(1, dtype=np.int64), 4, inter)


def test_split_sizes():
    assert _split_sizes(943, (8, 1, 1)) == (755, 94, 94)
    assert _split_sizes(10, (8, 1, 1)) == (8, 1, 1)
    assert _split_sizes(1, (8, 1, 1)) == (1, 0, 0)
    assert _split_sizes(3, (0, 1, 2)) == (0, 1, 2)
    assert sum(_split_sizes(1882, (8, 1, 1))) == 1882


def test_natural_order():
    ids = np.array(["10", "9", "a", "B", "007", "7", "100"], dtype=object)
    assert list(ids[natural_order(ids)]) == ["007", "7", "9", "10", "100", "B", "a"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["X", "x", "X (2)", "Y", "Psycho", "psycho (1960)"]), st.sampled_from(["", "1960", "1998"])
        ),
        min_size=1,
        max_size=12,
    )
)
def test_disambiguated_titles_are_unique(pairs):
    titles = [t for t, _ in pairs]
    hints = [h for _, h in pairs]
    out, renamed = disambiguate_titles([str(i) for i in range(len(titles))], titles, hints)
    assert len({t.casefold() for t in out}) == len(out)
    counts = pd.Series([t.casefold() for t in titles]).value_counts()
    for a, b in zip(titles, out):
        if counts[a.casefold()] == 1:
            assert a == b  # unique titles never change
    assert renamed == sum(a != b for a, b in zip(titles, out))


@pytest.mark.parametrize(
    "raw,title,year",
    [
        ("Matrix, The (1999)", "The Matrix", "1999"),
        ("Toy Story (1995)", "Toy Story", "1995"),
        (
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            "The City of Lost Children (La Cité des enfants perdus)",
            "1995",
        ),
        ("Amour, L' (1990)", "L'Amour", "1990"),
        ("Seven (Se7en) (1995)", "Seven (Se7en)", "1995"),
        ("Usual Suspects, The", "The Usual Suspects", ""),
        ("  Some   Film &amp; Co (2000) ", "Some Film & Co", "2000"),
        ("unknown", "", ""),
    ],
)
def test_movielens_titles(raw, title, year):
    assert normalize_movielens_title(raw) == (title, year)


def test_protocol_config_validation():
    with pytest.raises(ValueError):
        ProtocolConfig(min_history=0)
    with pytest.raises(ValueError):
        ProtocolConfig(max_history=3, min_history=4)
    with pytest.raises(ValueError):
        ProtocolConfig(split_ratios=(0, 0, 0))
    with pytest.raises(ValueError):
        ProtocolConfig(sim_negative_ratio=-1)


def test_popularity_weighted_negatives_follow_the_weights_and_skip_the_users_items():
    import numpy as np

    from coars_verl.datasets.protocol import InteractionSet, sample_negatives

    interacted = InteractionSet(np.array([0, 0]), np.array([0, 1]), n_users=1, n_items=6)
    weights = np.array([100.0, 100.0, 0.0, 1.0, 1.0, 50.0])
    draws = sample_negatives(np.random.default_rng(0), np.zeros(400, dtype=np.int64), 2, interacted, weights=weights)
    values, counts = np.unique(draws, return_counts=True)
    assert set(values) <= {3, 4, 5}  # never the user's items 0, 1; never the zero-weight item 2
    assert dict(zip(values.tolist(), counts.tolist()))[5] >= 390  # weight 50 against 1 + 1: in nearly every row
    with pytest.raises(ValueError, match="weights must be"):
        sample_negatives(np.random.default_rng(0), np.zeros(1, dtype=np.int64), 1, interacted, weights=np.ones(3))


def test_the_popularity_check_picks_as_the_baseline_does():
    import numpy as np

    from coars_verl.datasets.protocol import SplitSamples, popularity_check

    counts = np.array([5, 9, 9, 1])
    samples = SplitSamples(user=np.zeros(3, dtype=np.int64), target=np.array([1, 3, 0]), hist_offsets=np.zeros(4, dtype=np.int64),
                           hist_items=np.zeros(0, dtype=np.int64), candidates=np.array([[2, 1], [3, 0], [0, 3]]))
    check = popularity_check({"test": samples}, counts)["test"]
    # row 0: items 1 and 2 tie at 9 -> the lower index (1), the target; row 1: item 0 (5) beats 3; row 2: item 0, the target
    assert check["popularity_hit_at_1"] == pytest.approx(2 / 3)
    assert check["target_train_count_median"] == 5.0 and check["negative_train_count_median"] == 5.0
