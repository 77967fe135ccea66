"""The controlled learning task: the history determines the target, nothing else does, and the
files are the real datasets' files (same schema, loadable by the dialogue)."""

from collections import Counter

import pyarrow.parquet as pq
import pytest

from coars_verl.datasets.cli import main_learning_task
from coars_verl.datasets.learning_task import GENRE_WORDS, NOUN_WORDS, LearningTaskConfig, generate
from coars_verl.datasets.pipeline import write_outputs
from coars_verl.datasets.schema import SAMPLE_SCHEMA, USER_SIM_SCHEMA
from coars_verl.dialogue.state import DialogueSample

CONFIG = LearningTaskConfig(train_users=200, valid_users=20, test_users=30, num_candidates=10, noise_items=1, history_length=7)


def halves(title):
    genre, noun = title.split(" ")
    return genre, noun


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("learning") / "task"
    write_outputs(generate(CONFIG), out, quiet=True)
    return out


def _rows(task_dir, split):
    return pq.read_table(task_dir / f"{split}.parquet").column("extra_info").to_pylist()


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_the_history_determines_the_target(task_dir, split):
    for row in _rows(task_dir, split):
        history = [halves(t) for t in row["history_titles"]]
        genres, nouns = Counter(g for g, _ in history), Counter(n for _, n in history)
        (genre, g_count), (_, g_next) = genres.most_common(2)
        (noun, n_count), (_, n_next) = nouns.most_common(2)
        assert g_count >= 2 and n_count >= 2 and g_next == 1 and n_next == 1  # one repeated genre, one repeated noun
        assert row["target_title"] == f"{genre} {noun}"
        assert row["target_title"] not in row["history_titles"]
        assert len(history) == CONFIG.history_length
        noise = [h for h in history if h[0] != genre and h[1] != noun]
        assert len(noise) == CONFIG.noise_items


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_candidates_hold_the_target_once_and_the_distractors(task_dir, split):
    for row in _rows(task_dir, split):
        genre, noun = halves(row["target_title"])
        candidates = list(row["candidate_titles"])
        assert len(candidates) == CONFIG.num_candidates == len(set(candidates))
        assert candidates.count(row["target_title"]) == 1
        assert not set(candidates) & set(row["history_titles"])  # never-interacted items only
        shares = Counter((halves(c)[0] == genre, halves(c)[1] == noun) for c in candidates)
        assert shares[(True, True)] == 1
        assert shares[(True, False)] == CONFIG.genre_distractors
        assert shares[(False, True)] == CONFIG.noun_distractors
        sample = DialogueSample.from_extra_info(row)  # what the agent loop reads
        assert sum(sample.is_target(k) for k in range(len(candidates))) == 1


def test_target_position_and_preferences_are_spread(task_dir):
    rows = _rows(task_dir, "train")
    positions = Counter(list(r["candidate_titles"]).index(r["target_title"]) for r in rows)
    assert len(positions) == CONFIG.num_candidates and max(positions.values()) < 0.25 * len(rows)
    targets = Counter(r["target_title"] for r in rows)
    assert len(targets) > 0.5 * CONFIG.genres * CONFIG.nouns  # no item dominates: popularity cannot find targets


def test_schema_splits_and_user_sim(task_dir):
    for split in ("train", "valid", "test"):
        assert pq.read_schema(task_dir / f"{split}.parquet").equals(SAMPLE_SCHEMA)
    users = {s: {r["user_id"] for r in _rows(task_dir, s)} for s in ("train", "valid", "test")}
    assert len(users["train"]) == CONFIG.train_users and not users["train"] & users["test"] and not users["valid"] & users["test"]
    sim = pq.read_table(task_dir / "user_sim_test.parquet")
    assert sim.schema.equals(USER_SIM_SCHEMA)
    tests = {r["user_id"]: r for r in _rows(task_dir, "test")}
    for row in sim.to_pylist():
        sample = tests[row["user_id"]]
        assert row["positive_titles"] == [sample["target_title"]]
        assert len(row["negative_titles"]) == CONFIG.sim_negatives
        genre, noun = halves(sample["target_title"])
        # the hardest negatives first: items sharing one half of the target
        assert all(halves(t)[0] == genre or halves(t)[1] == noun for t in row["negative_titles"])
        assert sorted(row["item_titles"]) == sorted(row["positive_titles"] + row["negative_titles"])
        assert [t == sample["target_title"] for t in row["item_titles"]] == row["labels"]


def test_deterministic_and_streams_are_independent(tmp_path):
    write_outputs(generate(CONFIG), tmp_path / "a", quiet=True)
    write_outputs(generate(CONFIG), tmp_path / "b", quiet=True)
    assert (tmp_path / "a" / "test.parquet").read_bytes() == (tmp_path / "b" / "test.parquet").read_bytes()
    more_train = generate(LearningTaskConfig(**{**CONFIG.as_dict(), "train_users": 300}))
    base = generate(CONFIG)
    assert (more_train.splits["test"].candidates == base.splits["test"].candidates).all()
    other_seed = generate(LearningTaskConfig(**{**CONFIG.as_dict(), "seed": 1}))
    assert not (other_seed.splits["test"].target == base.splits["test"].target).all()


def test_titles_use_the_word_lists():
    prep = generate(LearningTaskConfig(train_users=5, valid_users=1, test_users=1, genres=8, nouns=9, noise_items=0))
    assert len(prep.titles) == 72
    assert {halves(t)[0] for t in prep.titles} == set(GENRE_WORDS[:8])
    assert {halves(t)[1] for t in prep.titles} == set(NOUN_WORDS[:9])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"genres": 3}, r"genres \(3\) too few"),
        ({"history_length": 5, "noise_items": 2}, "history_length - noise_items must be >= 4"),
        ({"num_candidates": 5}, "num_candidates must hold the target and the distractors"),
        ({"genre_distractors": 12}, "genre_distractors"),
        ({"train_users": 0}, "train_users must be >= 1"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        LearningTaskConfig(**options)


def test_cli_writes_and_reports_bad_options(tmp_path, capsys):
    assert main_learning_task(["--out", str(tmp_path / "ok"), "--train-users", "10", "--quiet"]) == 0
    assert (tmp_path / "ok" / "stats.json").exists()
    assert main_learning_task(["--out", str(tmp_path / "bad"), "--genres", "2", "--quiet"]) == 2
    assert "genres (2) too few" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
