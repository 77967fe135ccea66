"""The credit dump: per step, the token-level credit of a few dialogues, as the update used it.

With ``trainer.rollout_data_dir`` set, the trainer (:mod:`coars_verl.trainer`) writes beside verl's
own ``{step}.jsonl`` one file per step, ``<rollout_data_dir>/credit/step_<N>.json``: for the first
``coars.dump.dialogues_per_step`` dialogues of the step (sessions in key order; both role samples of
each) every response token with its outcome advantage, the teacher's delta, rlsd's weight (or the
additive term), the final advantage and the response mask, and the teacher context that scored the
sample. The format is documented in docs/credit_dump.md (``format``/``version`` fields); the viewer
(:mod:`coars_verl.viewer`) and the tests read it with :func:`read_credit_steps`.

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so a
reader never sees half a file, also while training runs.

Pure: no verl import; torch tensors in, JSON out.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from coars_verl.utils.config_reader import read_section

FORMAT = "coars_credit"
VERSION = 1
FOLDER = "credit"
_STEP_FILE = re.compile(r"^step_(\d+)\.json$")


@dataclass(frozen=True)
class DumpConfig:
    """``coars.dump``: what the credit dump keeps (read only with ``trainer.rollout_data_dir`` set)."""

    dialogues_per_step: int = field(default=4, metadata={"help": (
        "* dialogues (sessions) dumped per step, both role samples of each; 0 turns the credit dump off.")})

    def __post_init__(self) -> None:
        if self.dialogues_per_step < 0:
            raise ValueError(f"coars.dump.dialogues_per_step must be >= 0, got {self.dialogues_per_step}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None) -> "DumpConfig":
        return read_section(cls, mapping, "coars.dump")


def term_name(mode: str) -> Optional[str]:
    """The field holding the teacher's per-token term in ``mode``: ``weight`` (rlsd), ``additive_term``
    (additive), None (off)."""
    return {"rlsd": "weight", "additive": "additive_term"}.get(mode)


def session_of(key: str) -> str:
    """A sample key ``{uid}_{session}_{output index}`` -> its dialogue ``{uid}_{session}``."""
    return key.rsplit("_", 1)[0]


def dumped_rows(keys: Sequence[str], real: Sequence[bool], dialogues: int) -> list[int]:
    """Batch rows to dump: every real sample of the first ``dialogues`` sessions in key order, ordered
    by (session, key). Deterministic: the same batch gives the same rows."""
    sessions = sorted({session_of(k) for k, r in zip(keys, real) if r})[:dialogues]
    chosen = set(sessions)
    return sorted((i for i, (k, r) in enumerate(zip(keys, real)) if r and session_of(k) in chosen), key=lambda i: (session_of(keys[i]), keys[i]))


def float_list(values) -> list[float]:
    """A 1-D tensor as JSON floats: each the shortest decimal that reads back to the same float32."""
    import numpy as np

    return [float(str(np.float32(v))) for v in values.detach().float().cpu().numpy()]


def capture_samples(rows: Sequence[int], keys: Sequence[str], roles: Sequence[str], scores: Sequence[float], response_mask, outcome,
                    advantages, delta, term, teacher_sources: Mapping[int, str], teacher_texts: Mapping[int, str],
                    summaries: Sequence[Optional[Mapping[str, Any]]], term_name: Optional[str]) -> list[dict]:
    """One record per dumped row, each per-token list at the batch's padded width (``response_mask``
    rows hold the first ``len_i`` tokens of sample i: :func:`with_tokens` cuts them). ``delta``/``term``
    None: not recorded."""
    out = []
    for i in rows:
        record = {
            "row": i,
            "key": keys[i],
            "session": session_of(keys[i]),
            "role": roles[i],
            "reward": float(scores[i]),
            "response_mask": [int(v) for v in response_mask[i].tolist()],
            "outcome_advantage": float_list(outcome[i]),
            "delta": float_list(delta[i]) if delta is not None else None,
            "advantage": float_list(advantages[i]),
            "teacher": {"source": teacher_sources[i], "text": teacher_texts[i]} if i in teacher_sources else None,
            "summary": dict(summaries[i]) if summaries[i] is not None else None,
        }
        if term_name is not None and term is not None:
            record[term_name] = float_list(term[i])
        out.append(record)
    return out


SUMMARY_FIELDS = ("user_id", "target_title", "turns", "hit", "k_hit", "end_reason", "final_item_title", "rec_item_titles", "user_decisions")


def with_tokens(samples: list[dict], response_ids: Mapping[int, Sequence[int]], tokens: Mapping[int, Sequence[str]]) -> list[dict]:
    """The captured records with each sample's response token ids and strings, every per-token list
    cut to the response's length (the ids' count)."""
    out = []
    for sample in samples:
        n = len(response_ids[sample["row"]])
        record = dict(sample)
        for name in ("response_mask", "outcome_advantage", "delta", "weight", "additive_term", "advantage"):
            if record.get(name) is not None:
                record[name] = record[name][:n]
        record["response_ids"] = [int(t) for t in response_ids[sample["row"]]]
        record["tokens"] = list(tokens[sample["row"]])
        out.append(record)
    return out


def step_payload(step: int, self_distill: Mapping[str, Any], samples: list[dict]) -> dict:
    """The file's content: the step, the credit settings, the samples grouped into dialogues."""
    dialogues: dict[str, dict] = {}
    for sample in samples:
        dialogue = dialogues.setdefault(sample["session"], {"session": sample["session"], "rewards": {}, "summary": None, "samples": []})
        dialogue["rewards"][sample["role"]] = sample["reward"]
        if sample.get("summary") and dialogue["summary"] is None:
            dialogue["summary"] = {k: sample["summary"][k] for k in SUMMARY_FIELDS if k in sample["summary"]}
        dialogue["samples"].append({k: v for k, v in sample.items() if k != "summary"})
    return {"format": FORMAT, "version": VERSION, "step": int(step), "self_distill": dict(self_distill), "dialogues": list(dialogues.values())}


def step_path(rollout_data_dir: str | os.PathLike, step: int) -> Path:
    return Path(rollout_data_dir) / FOLDER / f"step_{int(step)}.json"


def write_json_atomically(path: Path, payload: Any) -> None:
    """``payload`` as JSON at ``path``: written to a temporary file in the same folder, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the dump from other readers
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, ensure_ascii=False, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_step(rollout_data_dir: str | os.PathLike, payload: dict) -> Path:
    path = step_path(rollout_data_dir, payload["step"])
    write_json_atomically(path, payload)
    return path


def read_credit_steps(folder: str | os.PathLike) -> list[dict]:
    """Every ``step_<N>.json`` of a credit folder (``<rollout_data_dir>/credit``), in step order;
    ValueError on a file of another format or a newer version."""
    folder = Path(folder)
    found = []
    for path in folder.iterdir() if folder.is_dir() else ():
        match = _STEP_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    steps = []
    for _, path in sorted(found):
        payload = json.loads(path.read_text())
        if payload.get("format") != FORMAT or int(payload.get("version", 0)) > VERSION:
            raise ValueError(f"{path}: not a {FORMAT} file of version <= {VERSION} (format {payload.get('format')!r}, "
                             f"version {payload.get('version')!r})")
        steps.append(payload)
    return steps
