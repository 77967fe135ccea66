"""Arrow schemas and table builders of the prepared files.

``<split>.parquet`` (train / valid / test) is what verl's ``main_ppo`` reads (RLHFDataset):

- data_source: string, ``coars/<dataset>``
- prompt: list<struct<role: string, content: string>>, the recommender's first-turn messages
  (``coars_verl.dialogue.prompts.recommender_initial_messages``)
- ability: string (constants.ABILITY)
- reward_model: struct<style: string = "rule", ground_truth: string = target title>
- agent_name: string (constants.AGENT_LOOP_NAME)
- extra_info: struct with the constants.EI_* keys: user_id, history_titles, history_item_ids,
  candidate_titles, candidate_item_ids, target_title, target_item_id, split, index (int64).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from coars_verl.constants import (
    ABILITY,
    AGENT_LOOP_NAME,
    DATA_SOURCE_PREFIX,
    EI_CANDIDATE_ITEM_IDS,
    EI_CANDIDATE_TITLES,
    EI_HISTORY_ITEM_IDS,
    EI_HISTORY_TITLES,
    EI_INDEX,
    EI_SPLIT,
    EI_TARGET_ITEM_ID,
    EI_TARGET_TITLE,
    EI_USER_ID,
)
from coars_verl.datasets.progress import progress
from coars_verl.datasets.protocol import Prepared, SplitSamples, UserSimSet
from coars_verl.dialogue.prompts import recommender_initial_messages


_STR_LIST = pa.list_(pa.string())
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
EXTRA_INFO = pa.struct(
    [
        (EI_USER_ID, pa.string()),
        (EI_HISTORY_TITLES, _STR_LIST),
        (EI_HISTORY_ITEM_IDS, _STR_LIST),
        (EI_CANDIDATE_TITLES, _STR_LIST),
        (EI_CANDIDATE_ITEM_IDS, _STR_LIST),
        (EI_TARGET_TITLE, pa.string()),
        (EI_TARGET_ITEM_ID, pa.string()),
        (EI_SPLIT, pa.string()),
        (EI_INDEX, pa.int64()),
    ]
)
REWARD_MODEL = pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
SAMPLE_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(MESSAGE)),
        ("ability", pa.string()),
        ("reward_model", REWARD_MODEL),
        ("agent_name", pa.string()),
        ("extra_info", EXTRA_INFO),
    ]
)
USER_SIM_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("split", pa.string()),
        ("index", pa.int64()),
        ("user_id", pa.string()),
        ("history_titles", _STR_LIST),
        ("history_item_ids", _STR_LIST),
        ("positive_titles", _STR_LIST),
        ("positive_item_ids", _STR_LIST),
        ("negative_titles", _STR_LIST),
        ("negative_item_ids", _STR_LIST),
        ("item_titles", _STR_LIST),
        ("item_ids", _STR_LIST),
        ("labels", pa.list_(pa.bool_())),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("raw_title", pa.string()),
        ("interactions", pa.int64()),
        ("train_interactions", pa.int64()),
    ]
)


def data_source_for(name: str) -> str:
    return f"{DATA_SOURCE_PREFIX}{name}"


def _list(values: pa.Array, offsets: np.ndarray) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32), pa.int32()), values)


def _const(value: str, n: int) -> pa.Array:
    return pa.array([value] * n, pa.string())


def sample_table(prep: Prepared, split: str, samples: SplitSamples, quiet: bool = False) -> pa.Table:
    n = len(samples)
    titles = pa.array(prep.titles.tolist(), pa.string())
    ids = pa.array(prep.item_ids.tolist(), pa.string())
    c = samples.candidates.shape[1] if n else prep.config.num_candidates
    c_off = np.arange(n + 1, dtype=np.int64) * c
    c_flat = pa.array(samples.candidates.reshape(-1), pa.int64())
    h_flat = pa.array(samples.hist_items, pa.int64())
    target = pa.array(samples.target, pa.int64())
    target_titles = titles.take(target)

    # Prompts: the recommender's first-turn messages, built by the shared prompt code.
    title_list = prep.titles.tolist()
    hist_titles = [title_list[i] for i in samples.hist_items.tolist()]
    cand_titles = [title_list[i] for i in samples.candidates.reshape(-1).tolist()]
    ho = samples.hist_offsets.tolist()
    roles: list[str] = []
    contents: list[str] = []
    m_off = [0]
    for r in progress(range(n), desc=f"prompts {split}", quiet=quiet, mininterval=0.5):
        msgs = recommender_initial_messages(hist_titles[ho[r] : ho[r + 1]], cand_titles[r * c : (r + 1) * c])
        for m in msgs:
            roles.append(m["role"])
            contents.append(m["content"])
        m_off.append(len(roles))
    messages = pa.StructArray.from_arrays(
        [pa.array(roles, pa.string()), pa.array(contents, pa.string())], fields=list(MESSAGE)
    )
    prompt = _list(messages, np.asarray(m_off))
    extra = pa.StructArray.from_arrays(
        [
            pa.array(prep.user_ids[samples.user].tolist() if n else [], pa.string()),
            _list(titles.take(h_flat), samples.hist_offsets),
            _list(ids.take(h_flat), samples.hist_offsets),
            _list(titles.take(c_flat), c_off),
            _list(ids.take(c_flat), c_off),
            target_titles,
            ids.take(target),
            _const(split, n),
            pa.array(np.arange(n, dtype=np.int64), pa.int64()),
        ],
        fields=list(EXTRA_INFO),
    )
    reward = pa.StructArray.from_arrays([_const("rule", n), target_titles], fields=list(REWARD_MODEL))
    return pa.Table.from_arrays(
        [_const(data_source_for(prep.name), n), prompt, _const(ABILITY, n), reward, _const(AGENT_LOOP_NAME, n), extra],
        schema=SAMPLE_SCHEMA,
    )


def user_sim_table(prep: Prepared, split: str, sim: UserSimSet) -> pa.Table:
    n = len(sim)
    titles = pa.array(prep.titles.tolist(), pa.string())
    ids = pa.array(prep.item_ids.tolist(), pa.string())

    def pair(flat: np.ndarray, off: np.ndarray) -> tuple[pa.Array, pa.Array]:
        idx = pa.array(np.asarray(flat, dtype=np.int64), pa.int64())
        return _list(titles.take(idx), off), _list(ids.take(idx), off)

    ht, hi = pair(sim.hist_items, sim.hist_offsets)
    pt, pi = pair(sim.pos_items, sim.pos_offsets)
    nt, ni = pair(sim.neg_items, sim.neg_offsets)
    jt, ji = pair(sim.judge_items, sim.judge_offsets)
    labels = _list(pa.array(sim.judge_labels.astype(bool), pa.bool_()), sim.judge_offsets)
    return pa.Table.from_arrays(
        [
            _const(data_source_for(prep.name), n),
            _const(split, n),
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array(prep.user_ids[sim.user].tolist() if n else [], pa.string()),
            ht,
            hi,
            pt,
            pi,
            nt,
            ni,
            jt,
            ji,
            labels,
        ],
        schema=USER_SIM_SCHEMA,
    )


def items_table(prep: Prepared) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array(prep.item_ids.tolist(), pa.string()),
            pa.array(prep.titles.tolist(), pa.string()),
            pa.array(prep.raw_titles.tolist(), pa.string()),
            pa.array(prep.item_interactions.astype(np.int64)),
            pa.array(prep.item_train_interactions.astype(np.int64)),
        ],
        schema=ITEMS_SCHEMA,
    )
