"""The evaluation run: select samples, skip those already done, play the rest batch by batch,
append each finished batch to the JSONL files, and compute the totals from the files.

``evaluate(options, out_dir)`` is what ``python -m coars_verl.eval`` calls; tests may pass their
own ``backend`` and ``codec`` (then no model is loaded).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from coars_verl.agent_loop_config import AgentLoopConfig
from coars_verl.dialogue.prompts import PromptTemplates
from coars_verl.dialogue.state import DialogueConfig
from coars_verl.distill.contexts import NEEDS_ITEM_HISTORY, teacher_source
from coars_verl.distill.memory import DialogueMemory
from coars_verl.eval import data as data_mod
from coars_verl.eval.backends import GenerationBackend, check_backend, make_backend, resolve_backend_name
from coars_verl.eval.memory_baseline import MemorySetting, memory_rows, played_memory, recommender_contexts
from coars_verl.eval.metrics import Judgment, recommendation_metrics, user_sim_metrics
from coars_verl.eval.report import make_result, markdown_single
from coars_verl.eval.runner import ChatCodec, GenerationLimits, run_dialogues, run_user_sim
from coars_verl.eval.store import ResultStore, write_json_atomic, write_text_atomic

TASK_DIALOGUE, TASK_USER_SIM, TASKS = data_mod.TASK_DIALOGUE, data_mod.TASK_USER_SIM, data_mod.TASKS
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
MEMORY_JSON = "memory.json"
DEFAULT_BATCH_SIZE = {"hf": 8, "vllm": 256}


@dataclass
class EvalOptions:
    model: str
    data: str
    split: str = "test"
    tasks: tuple[str, ...] = TASKS
    max_samples: Optional[int] = None
    one_per_user: bool = False
    max_users: Optional[int] = None
    max_turns: int = DialogueConfig.max_turns  # the training defaults: evaluation plays the dialogue training played
    numbered_candidates: bool = DialogueConfig.numbered_candidates
    max_reason_chars: int = DialogueConfig.max_reason_chars
    prompts: dict[str, str] = field(default_factory=dict)
    max_tokens: int = AgentLoopConfig.max_tokens_per_turn
    response_budget: Optional[int] = None
    backend: str = "auto"
    dtype: Optional[str] = None
    device: str = "auto"
    batch_size: Optional[int] = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    vllm_kwargs: dict[str, Any] = field(default_factory=dict)
    merge_cache: Optional[str] = None
    label: Optional[str] = None
    memory: MemorySetting = field(default_factory=MemorySetting)
    """The Reflexion-style baseline (:mod:`coars_verl.eval.memory_baseline`); off by default."""

    def dialogue_config(self) -> DialogueConfig:
        return DialogueConfig(
            max_turns=self.max_turns,
            numbered_candidates=self.numbered_candidates,
            templates=PromptTemplates.from_overrides(self.prompts),
            max_reason_chars=self.max_reason_chars,
        )

    def check(self) -> None:
        data_mod.check_tasks(self.tasks)
        for name in ("max_samples", "max_users", "batch_size", "response_budget"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        self.memory.check()
        if self.memory.enabled and TASK_DIALOGUE not in self.tasks:
            raise ValueError("memory: the Reflexion-style memory is shown in dialogues; add the dialogue task")
        self.dialogue_config()  # validates the dialogue settings and templates


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _user_batches(rows: Sequence[data_mod.UserSimRow], questions: int) -> list[list[data_mod.UserSimRow]]:
    """Whole users per batch, about ``questions`` questions each (at least one user)."""
    batches: list[list[data_mod.UserSimRow]] = []
    current: list[data_mod.UserSimRow] = []
    count = 0
    for row in rows:
        current.append(row)
        count += len(row.item_titles)
        if count >= questions:
            batches.append(current)
            current, count = [], 0
    if current:
        batches.append(current)
    return batches


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    disabled = not enabled or bool(os.environ.get("COARS_NO_PROGRESS"))
    return tqdm(total=total, initial=initial, desc=desc, unit="sample", disable=disabled, dynamic_ncols=True)


class StopRequested(Exception):
    """Raised internally when ``stop_after_batches`` is reached (the run is left resumable)."""


def fingerprint(options: EvalOptions, backend_name: str, data_files: dict[str, Any]) -> dict[str, Any]:
    """The options that decide the results; a resumed run must give the same ones."""
    config = options.dialogue_config()
    return {
        "model": str(Path(options.model).expanduser().resolve()) if Path(options.model).expanduser().exists() else options.model,
        "data_files": data_files,
        "split": options.split,
        "tasks": list(options.tasks),
        "max_samples": options.max_samples,
        "one_per_user": options.one_per_user,
        "max_users": options.max_users,
        "max_turns": config.max_turns,
        "numbered_candidates": config.numbered_candidates,
        "max_reason_chars": config.max_reason_chars,
        "templates": asdict(config.templates),
        "max_tokens": options.max_tokens,
        "response_budget": options.response_budget,
        "backend": backend_name,
        "dtype": options.dtype,
        "chat_template_kwargs": options.chat_template_kwargs,
        "decoding": "greedy",
        **({"memory": asdict(options.memory)} if options.memory.enabled else {}),
        # engine settings such as max_model_len change token budgets, so they decide the results too
        **({"vllm_kwargs": options.vllm_kwargs} if backend_name == "vllm" else {}),
    }


def _load_model(options: EvalOptions, backend_name: str, batch_size: int):
    from transformers import AutoTokenizer

    from coars_verl.eval.checkpoint import resolve_model

    resolved = resolve_model(options.model, options.merge_cache)
    backend = make_backend(
        backend_name,
        resolved.path,
        device=options.device,
        dtype=options.dtype,
        batch_size=batch_size,
        vllm_kwargs=options.vllm_kwargs,
    )
    codec = ChatCodec(AutoTokenizer.from_pretrained(str(resolved.path)), options.chat_template_kwargs)
    return resolved, backend, codec


def evaluate(
    options: EvalOptions,
    out_dir: str | Path,
    *,
    backend: Optional[GenerationBackend] = None,
    codec: Optional[ChatCodec] = None,
    stop_after_batches: Optional[int] = None,
    progress: bool = True,
    on_batch: Optional[Callable[[str, int], None]] = None,
) -> dict[str, Any]:
    """Run (or resume) an evaluation into ``out_dir``; returns the results dict (also written as JSON
    and markdown). ``on_batch(task, batches_done)`` is called after each batch is stored."""
    options.check()
    start = time.perf_counter()
    out_dir = Path(out_dir)
    backend_name = backend.name if backend is not None else resolve_backend_name(options.backend)
    if backend is None:
        check_backend(backend_name, options.vllm_kwargs)  # before any file is written or a checkpoint merged
    batch_size = options.batch_size or DEFAULT_BATCH_SIZE.get(backend_name, 8)
    if options.dtype is None and backend is None:
        options = replace(options, dtype="auto" if backend_name == "vllm" else "float32")
    config = options.dialogue_config()

    dialogue_rows = user_rows = None
    data_files: dict[str, Any] = {}
    if TASK_DIALOGUE in options.tasks:
        path = data_mod.dialogue_file(options.data, options.split)
        dialogue_rows = data_mod.load_dialogue_rows(options.data, options.split, options.max_samples, options.one_per_user)
        data_files[path.name] = data_mod.file_sha256(path)
    if TASK_USER_SIM in options.tasks:
        path = data_mod.user_sim_file(options.data, options.split)
        user_rows = data_mod.load_user_sim_rows(options.data, options.split, options.max_users)
        data_files[path.name] = data_mod.file_sha256(path)

    store = ResultStore(out_dir, fingerprint(options, backend_name, data_files))
    done = {task: store.load(task) for task in options.tasks}
    pending_dialogues = [r for r in dialogue_rows or [] if r.key not in done.get(TASK_DIALOGUE, {})]
    pending_users = [r for r in user_rows or [] if r.key not in done.get(TASK_USER_SIM, {})]

    resolved = None
    timings: dict[str, Any] = {}
    if (pending_dialogues or pending_users) and (backend is None or codec is None):
        t0 = time.perf_counter()
        resolved, backend, codec = _load_model(options, backend_name, batch_size)
        timings["model_load_s"] = round(time.perf_counter() - t0, 3)
    limits = GenerationLimits(options.max_tokens, options.response_budget, getattr(backend, "max_context", None))

    batches = 0
    stopped = False

    def finished_batch(task: str) -> None:
        nonlocal batches
        batches += 1
        if on_batch is not None:
            on_batch(task, batches)
        if stop_after_batches is not None and batches >= stop_after_batches:
            raise StopRequested

    memory = None
    if options.memory.enabled and pending_dialogues:
        t0 = time.perf_counter()
        memory = _memory(options, out_dir, dialogue_rows, backend, codec, config, limits, batch_size)
        timings["memory_s"] = round(time.perf_counter() - t0, 3)

    try:
        if dialogue_rows is not None and pending_dialogues:
            with _progress(len(dialogue_rows), len(dialogue_rows) - len(pending_dialogues), "dialogues", progress) as bar:
                for chunk in _chunks(pending_dialogues, batch_size):
                    t0 = time.perf_counter()
                    contexts = recommender_contexts(chunk, memory, options.memory) if memory is not None else [None] * len(chunk)
                    summaries = run_dialogues(chunk, backend, codec, config, limits, recommender_contexts=contexts)
                    share = (time.perf_counter() - t0) / len(chunk)
                    store.append(
                        TASK_DIALOGUE,
                        [{"key": r.key, "user_id": r.user_id, "s": round(share, 4), "summary": s,
                          **({"memory_context": c} if options.memory.enabled else {})}
                         for r, s, c in zip(chunk, summaries, contexts)],
                    )
                    bar.update(len(chunk))
                    finished_batch(TASK_DIALOGUE)
        if user_rows is not None and pending_users:
            with _progress(len(user_rows), len(user_rows) - len(pending_users), "user-sim users", progress) as bar:
                for group in _user_batches(pending_users, batch_size):
                    t0 = time.perf_counter()
                    records = run_user_sim(group, backend, codec, config, limits)
                    share = (time.perf_counter() - t0) / len(group)
                    store.append(TASK_USER_SIM, [{**rec, "s": round(share, 4)} for rec in records])
                    bar.update(len(group))
                    finished_batch(TASK_USER_SIM)
    except StopRequested:
        stopped = True

    result = _results(options, store, dialogue_rows, user_rows, backend_name, batch_size, resolved, timings, start)
    result["stopped_early"] = stopped
    write_json_atomic(out_dir / RESULTS_JSON, result)
    write_text_atomic(out_dir / RESULTS_MD, markdown_single(result))
    return result


def _memory(options, out_dir: Path, dialogue_rows, backend, codec, config, limits, batch_size) -> DialogueMemory:
    """The Reflexion-style memory: loaded from ``--memory-file``, or from this run's ``memory.json``
    (a resumed run), or played now on the test users' ``--memory-from-split`` windows and saved."""
    memory = DialogueMemory()
    if options.memory.file is not None:
        memory.load(options.memory.file)
        return memory
    saved = out_dir / MEMORY_JSON
    if saved.exists():
        memory.load(saved)
        return memory
    split_rows = data_mod.load_dialogue_rows(options.data, options.memory.split, None, False)
    # a source that compares item histories shows other users' dialogues: every user of the split plays one
    other_users = any(NEEDS_ITEM_HISTORY in teacher_source(s).needs for s in options.memory.sources)
    users = {r.user_id for r in (split_rows if other_users else dialogue_rows) if r.user_id}
    rows = memory_rows(split_rows, users)

    def play(chosen):
        return [s for chunk in _chunks(chosen, batch_size) for s in run_dialogues(chunk, backend, codec, config, limits)]

    memory = played_memory(rows, play)
    memory.save(saved)
    return memory


def _results(options, store, dialogue_rows, user_rows, backend_name, batch_size, resolved, timings, start) -> dict[str, Any]:
    recommendation = user_sim = None
    counts: dict[str, Any] = {}
    generation_s = 0.0
    complete = True
    if dialogue_rows is not None:
        records = store.load(TASK_DIALOGUE)
        chosen = [records[r.key] for r in dialogue_rows if r.key in records]
        complete &= len(chosen) == len(dialogue_rows)
        recommendation = recommendation_metrics(rec["summary"] for rec in chosen)
        counts.update({"dialogues_selected": len(dialogue_rows), "dialogues_done": len(chosen)})
        if options.memory.enabled:
            counts["dialogues_with_memory"] = sum(bool(rec.get("memory_context")) for rec in chosen)
        generation_s += sum(float(rec.get("s", 0.0)) for rec in chosen)
    if user_rows is not None:
        records = store.load(TASK_USER_SIM)
        chosen = [records[r.key] for r in user_rows if r.key in records]
        complete &= len(chosen) == len(user_rows)
        user_sim = user_sim_metrics(
            [Judgment(bool(label), None if d is None else bool(d)) for label, d in zip(rec["labels"], rec["decisions"])]
            for rec in chosen
        )
        counts.update({"users_selected": len(user_rows), "users_done": len(chosen)})
        generation_s += sum(float(rec.get("s", 0.0)) for rec in chosen)
    config = dict(store.options)
    config.update({"batch_size": batch_size, "device": options.device})
    model_path = str(Path(options.model).expanduser().resolve()) if Path(options.model).expanduser().exists() else options.model
    model = {"path": model_path}
    if resolved is not None:
        model.update({"resolved": str(resolved.path), "source": resolved.source})
    timings = {
        **timings,
        "run_wall_s": round(time.perf_counter() - start, 3),
        "batch_wall_s_total": round(generation_s, 3),
    }
    return make_result(
        label=options.label or _default_label(options.model) + ("+memory" if options.memory.enabled else ""),
        kind="model",
        complete=complete,
        model=model,
        data={"dir": str(Path(options.data).resolve()), "split": options.split, "files": store.options["data_files"]},
        config=config,
        counts=counts,
        recommendation=recommendation,
        user_sim=user_sim,
        timings=timings,
        extra={"versions": _versions()},
    )


def _default_label(model: str) -> str:
    path = Path(model)
    if path.name == "actor" and path.parent.name.startswith("global_step_"):
        path = path.parent
    if path.name.startswith("global_step_"):
        return f"{path.parent.parent.name}/{path.name}" if path.parent.name == "checkpoints" else f"{path.parent.name}/{path.name}"
    return path.name or str(model)


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "vllm", "coars-verl"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
