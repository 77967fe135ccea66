"""A controlled recommendation task that a CPU-sized model can learn: for checking that training learns.

Not a recommendation benchmark. Every item title carries two attributes, a genre word and a
noun (``"soul Garden"``); the catalogue is every (genre, noun) pair. Each user has a latent
preference (g, n), and the item they pick next is the one item that carries both, ``"g n"``.
Their history shows the two halves separately:

* ``genre carriers``: items ``"g x"`` with another noun x;
* ``noun carriers``: items ``"y n"`` with another genre y;
* ``noise``: items with neither (a share of the history, a difficulty knob).

Words are drawn without repetition inside a history, so g is the only repeated genre and n the
only repeated noun: the history determines the target, and nothing else does (preferences are
uniform, so every item is about equally popular and the popularity baseline is near random).
Candidates are the target, ``genre_distractors`` items sharing only the genre, ``noun_distractors``
items sharing only the noun, and items with neither, none of them in the history, shuffled.
So knowing one attribute narrows the candidates but does not find the target, a user agent
that knows its history can say which half of a rejected item was wrong (its feedback helps the
next turn), and every teacher context that shows the accepted item (sibling, hindsight,
memory of an earlier dialogue of the same user) carries the answer.

The output is written by the same writer as the real datasets (``train/valid/test.parquet``,
``user_sim_{valid,test}.parquet``, ``items.parquet``, ``stats.json``), so the agent loop, the
reward, the evaluation and the recipes run unchanged. The user-simulation set of a user is its
target (positive) and ``sim_negatives`` other candidates of its test sample (negatives: the
distractors first, so that a user agent must check both halves). Deterministic from ``seed``:
each split draws from its own named random stream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from coars_verl.datasets.errors import DropCounter
from coars_verl.datasets.protocol import SPLITS, Prepared, ProtocolConfig, SplitSamples, UserSimSet


DATASET_NAME = "learning"
FORMAT = "synthetic"

GENRE_WORDS = (
    "jazz rock pop soul folk metal blues indie drama comedy horror western "
    "crime war fantasy mystery romance thriller musical action adventure family sport country"
).split()
NOUN_WORDS = (
    "Garden River City Night Dream Road Sky Storm Ocean Forest Island Star "
    "Moon Sun Machine Letter Song Story Game Journey Station Window Mirror House"
).split()

# Named random streams (one per split), so that e.g. more train users do not change the test set.
_STREAMS = {"train": 1, "valid": 2, "test": 3, "user_sim_valid": 4, "user_sim_test": 5}


@dataclass(frozen=True)
class LearningTaskConfig:
    seed: int = 0
    train_users: int = 2000
    valid_users: int = 64
    test_users: int = 64
    genres: int = 12
    """Genre words used (the first N of ``GENRE_WORDS``)."""
    nouns: int = 12
    """Noun words used (the first N of ``NOUN_WORDS``); the catalogue has genres x nouns items."""
    history_length: int = 6
    noise_items: int = 0
    """History items carrying neither preference (the rest alternate genre and noun carriers)."""
    num_candidates: int = 20
    genre_distractors: int = 3
    noun_distractors: int = 3
    sim_negatives: int = 3
    """Not-liked items per user in the user-simulation sets (one liked item: the target)."""

    def __post_init__(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(f"learning task: {message}")

        for name in ("train_users", "valid_users", "test_users", "genres", "nouns", "history_length", "num_candidates"):
            need(int(getattr(self, name)) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("noise_items", "genre_distractors", "noun_distractors", "sim_negatives"):
            need(int(getattr(self, name)) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.genres <= len(GENRE_WORDS), f"genres must be <= {len(GENRE_WORDS)}, got {self.genres}")
        need(self.nouns <= len(NOUN_WORDS), f"nouns must be <= {len(NOUN_WORDS)}, got {self.nouns}")
        carriers = self.history_length - self.noise_items
        need(carriers >= 4, f"history_length - noise_items must be >= 4 (two carriers of each preference), got {carriers}")
        genre_carriers, noun_carriers = self.carriers()
        # Distinct words inside a history: the genre, the noun carriers' and the noise items' genres.
        need(1 + noun_carriers + self.noise_items <= self.genres, f"genres ({self.genres}) too few for this history")
        need(1 + genre_carriers + self.noise_items <= self.nouns, f"nouns ({self.nouns}) too few for this history")
        need(genre_carriers + self.genre_distractors <= self.nouns - 1, "genre_distractors: not enough nouns left")
        need(noun_carriers + self.noun_distractors <= self.genres - 1, "noun_distractors: not enough genres left")
        need(
            1 + self.genre_distractors + self.noun_distractors <= self.num_candidates,
            "num_candidates must hold the target and the distractors",
        )
        neither = (self.genres - 1) * (self.nouns - 1) - self.noise_items
        need(self.num_candidates - 1 - self.genre_distractors - self.noun_distractors <= neither, "num_candidates too large")
        need(self.sim_negatives <= self.num_candidates - 1, "sim_negatives must be < num_candidates")

    def carriers(self) -> tuple[int, int]:
        """(genre carriers, noun carriers) in a history."""
        carriers = self.history_length - self.noise_items
        return (carriers + 1) // 2, carriers // 2

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _User:
    genre: int
    noun: int
    history: list[tuple[int, int]]
    candidates: list[tuple[int, int]]


def _draw_user(rng: np.random.Generator, cfg: LearningTaskConfig) -> _User:
    genre, noun = int(rng.integers(cfg.genres)), int(rng.integers(cfg.nouns))
    n_genre_carriers, n_noun_carriers = cfg.carriers()
    other_genres = [g for g in rng.permutation(cfg.genres).tolist() if g != genre]
    other_nouns = [n for n in rng.permutation(cfg.nouns).tolist() if n != noun]
    carrier_nouns, other_nouns = other_nouns[:n_genre_carriers], other_nouns[n_genre_carriers:]
    carrier_genres, other_genres = other_genres[:n_noun_carriers], other_genres[n_noun_carriers:]
    noise = list(zip(other_genres[: cfg.noise_items], other_nouns[: cfg.noise_items]))
    history = [(genre, x) for x in carrier_nouns] + [(y, noun) for y in carrier_genres] + noise
    history = [history[i] for i in rng.permutation(len(history))]

    seen = set(history)
    genre_pool = [(genre, x) for x in rng.permutation(cfg.nouns).tolist() if x != noun and (genre, x) not in seen]
    noun_pool = [(y, noun) for y in rng.permutation(cfg.genres).tolist() if y != genre and (y, noun) not in seen]
    candidates = [(genre, noun)] + genre_pool[: cfg.genre_distractors] + noun_pool[: cfg.noun_distractors]
    rest = cfg.num_candidates - len(candidates)
    if rest > 0:
        neither = np.array([(y, x) for y in range(cfg.genres) for x in range(cfg.nouns) if y != genre and x != noun and (y, x) not in seen])
        picked = rng.choice(len(neither), size=rest, replace=False)
        candidates += [tuple(int(v) for v in neither[i]) for i in picked]
    candidates = [candidates[i] for i in rng.permutation(len(candidates))]
    return _User(genre, noun, history, candidates)


def generate(cfg: LearningTaskConfig) -> Prepared:
    """Draw the users of every split and return them as a :class:`Prepared` (write with ``write_outputs``)."""
    n_items = cfg.genres * cfg.nouns
    titles = np.array([f"{GENRE_WORDS[g]} {NOUN_WORDS[n]}" for g in range(cfg.genres) for n in range(cfg.nouns)], dtype=object)
    item_ids = np.array([str(i) for i in range(n_items)], dtype=object)

    def item(pair: tuple[int, int]) -> int:
        return pair[0] * cfg.nouns + pair[1]

    counts = {"train": cfg.train_users, "valid": cfg.valid_users, "test": cfg.test_users}
    users: dict[str, list[_User]] = {}
    for split in SPLITS:
        rng = np.random.default_rng([cfg.seed, _STREAMS[split]])
        users[split] = [_draw_user(rng, cfg) for _ in range(counts[split])]

    user_ids: list[str] = []
    splits: dict[str, SplitSamples] = {}
    for split in SPLITS:
        first = len(user_ids)
        user_ids += [f"{split}-{k}" for k in range(len(users[split]))]
        group = users[split]
        hist_len = np.array([len(u.history) for u in group], dtype=np.int64)
        splits[split] = SplitSamples(
            user=np.arange(first, first + len(group), dtype=np.int64),
            target=np.array([item((u.genre, u.noun)) for u in group], dtype=np.int64),
            hist_offsets=np.concatenate([[0], np.cumsum(hist_len)]).astype(np.int64),
            hist_items=np.array([item(p) for u in group for p in u.history], dtype=np.int64),
            candidates=np.array([[item(p) for p in u.candidates] for u in group], dtype=np.int64).reshape(len(group), cfg.num_candidates),
        )

    user_sim = {split: _user_sim_set(cfg, splits[split], users[split], split) for split in ("valid", "test")}
    every = np.concatenate([np.concatenate([s.hist_items, s.target]) for s in splits.values()])
    train = splits["train"]
    interactions = int(every.size)
    return Prepared(
        name=DATASET_NAME,
        format=FORMAT,
        config=ProtocolConfig(
            seed=cfg.seed,
            max_history=cfg.history_length,
            min_history=cfg.history_length,
            num_candidates=cfg.num_candidates,
            max_train_samples_per_user=1,
            max_eval_samples_per_user=1,
            sim_positives=1,
            sim_negative_ratio=float(cfg.sim_negatives),
        ),
        user_ids=np.array(user_ids, dtype=object),
        item_ids=item_ids,
        titles=titles,
        raw_titles=titles.copy(),
        item_interactions=np.bincount(every, minlength=n_items),
        item_train_interactions=np.bincount(np.concatenate([train.hist_items, train.target]), minlength=n_items),
        splits=splits,
        user_sim=user_sim,
        users_per_split={split: len(users[split]) for split in SPLITS},
        drops=DropCounter(),
        raw_stats={"users": len(user_ids), "items": n_items, "interactions": interactions},
        clean_stats={"users": len(user_ids), "items": n_items, "interactions": interactions},
        info={"learning_task": cfg.as_dict(), "genre_words": GENRE_WORDS[: cfg.genres], "noun_words": NOUN_WORDS[: cfg.nouns]},
        title_normalizer="none",
    )


def _user_sim_set(cfg: LearningTaskConfig, samples: SplitSamples, group: list[_User], split: str) -> UserSimSet:
    """One liked item (the target) and ``sim_negatives`` of the sample's other candidates, distractors first."""
    rng = np.random.default_rng([cfg.seed, _STREAMS[f"user_sim_{split}"]])
    negatives, judge, labels = [], [], []
    for k, user in enumerate(group):
        target = int(samples.target[k])
        others = [int(c) for c in samples.candidates[k] if int(c) != target]
        shares = [(c // cfg.nouns == user.genre) or (c % cfg.nouns == user.noun) for c in others]
        ranked = [c for c, s in zip(others, shares) if s] + [c for c, s in zip(others, shares) if not s]
        chosen = ranked[: cfg.sim_negatives]
        items = [target] + chosen
        order = rng.permutation(len(items))
        negatives.append(chosen)
        judge.append([items[i] for i in order])
        labels.append([i == 0 for i in order])
    n = len(group)
    pos_offsets = np.arange(n + 1, dtype=np.int64)
    neg_offsets = np.arange(n + 1, dtype=np.int64) * cfg.sim_negatives
    judge_offsets = np.arange(n + 1, dtype=np.int64) * (cfg.sim_negatives + 1)
    return UserSimSet(
        user=samples.user.copy(),
        hist_offsets=samples.hist_offsets.copy(),
        hist_items=samples.hist_items.copy(),
        pos_offsets=pos_offsets,
        pos_items=samples.target.copy(),
        neg_offsets=neg_offsets,
        neg_items=np.array([c for row in negatives for c in row], dtype=np.int64),
        judge_offsets=judge_offsets,
        judge_items=np.array([c for row in judge for c in row], dtype=np.int64),
        judge_labels=np.array([x for row in labels for x in row], dtype=bool),
    )
