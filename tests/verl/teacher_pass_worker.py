"""Run by ``test_teacher_pass_on_cpu.py`` in a fresh process: the teacher pass through verl's own
actor worker (``ActorRolloutRefWorker.compute_log_prob``), in-process on CPU without Ray.

The environment must be set before verl is imported (the plugin reads ``VERL_PLATFORM`` then), so
this cannot share the pytest process. Prints one JSON object with the measured differences.

    python tests/verl/teacher_pass_worker.py MODEL_DIR
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[2] / "coars_verl" / "recipes"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


os.environ.update(VERL_PLATFORM="cpu", COARS_VERL_STRICT="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import verl  # noqa: E402,F401  (loads the coars_verl plugin: the CPU platform)
from verl.trainer.ppo.padding_utils import build_padding_position_ids  # noqa: E402

from coars_verl.algo.role_batch import self_distill_delta  # noqa: E402
from coars_verl.distill.teacher_prompt import teacher_prompt_ids  # noqa: E402
from coars_verl.teacher_records import RECORD_FIELDS, scored_log_probs, teacher_batch, teacher_record  # noqa: E402

SAMPLES = [  # (student messages, response text, teacher context or "" for none)
    ([{"role": "system", "content": "You recommend."}, {"role": "user", "content": "Candidates: Heat, Up."}],
     "Reason: crime.\nItem: Heat", "The user accepted Heat last time."),
    ([{"role": "system", "content": "You are the user."}, {"role": "user", "content": "I recommend Up. Do you accept it?"}],
     "Reason: too light.\nDecision: no", ""),
    ([{"role": "system", "content": "You recommend films to a user who watched Alien and Aliens."},
      {"role": "user", "content": "Candidates: The Matrix, Toy Story, Fargo, Jaws, Babe."}],
     "Reason: you like sci-fi with action and a dark tone.\nItem: The Matrix", "Earlier dialogues: the user rejected Babe (too childish) and accepted The Matrix."),
]


def compose(model_path: str):
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(RECIPES), version_base=None):
        cfg = hydra_compose(config_name="cpu_learning_tiny", overrides=[
            f"actor_rollout_ref.model.path={model_path}", "data.train_files=unused.parquet", "data.val_files=unused.parquet"])
    OmegaConf.resolve(cfg)
    return cfg


def stored_sample(prompt_ids: list[int], response_ids: list[int]) -> dict:
    """A sample as verl's agent loop stores it in TransferQueue (the fields the log-prob pass reads)."""
    prompt, response = torch.tensor(prompt_ids), torch.tensor(response_ids)
    input_ids = torch.cat([prompt, response])
    attention_mask = torch.ones_like(input_ids)
    ones = torch.ones(len(response_ids), dtype=torch.int64)
    return {"prompts": prompt, "responses": response, "input_ids": input_ids, "attention_mask": attention_mask,
            "position_ids": build_padding_position_ids(None, attention_mask), "response_mask": ones, "loss_mask": ones.clone()}


def worker_log_probs(worker, records: list[dict], micro_batch_size: int, eos: int) -> tuple[list[torch.Tensor], int]:
    """Each record's response-token log-probs from the worker, and the micro-batch size sent: the
    trainer's own batch (teacher_batch: shape, padding records, scoring order) and read-back."""
    batch, order = teacher_batch(records, dp_size=1, micro_batch_size=micro_batch_size, eos_token_id=eos,
                                 call_options={"calculate_entropy": False, "compute_loss": False, "temperature": 1.0})
    return scored_log_probs(worker.compute_log_prob(batch), batch, order, len(records)), batch["micro_batch_size_per_gpu"]


def main(model_path: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from verl.workers.engine_workers import ActorRolloutRefWorker

    cfg = compose(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32).eval()

    def render(messages):
        return list(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, return_dict=False))

    worker = ActorRolloutRefWorker(config=cfg.actor_rollout_ref, role="actor_rollout", distillation_config=cfg.get("distillation"))
    worker.init_model()
    multiple = int(cfg.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu)
    eos = tokenizer.eos_token_id

    sources, teacher_prompts = [], {}
    for i, (messages, text, context) in enumerate(SAMPLES):
        response = tokenizer.encode(text, add_special_tokens=False) + [eos]
        sources.append(stored_sample(render(messages), response))
        if context:
            teacher_prompts[i] = teacher_prompt_ids(render, messages, context)
    rows = sorted(teacher_prompts)
    # the trainer fetches only RECORD_FIELDS of a stored sample to build its teacher record
    fetched = [{k: s[k] for k in RECORD_FIELDS if k in s} for s in sources]
    teacher_log_probs, teacher_micro_batch = worker_log_probs(worker, [teacher_record(fetched[i], teacher_prompts[i]) for i in rows], multiple, eos)
    teacher = dict(zip(rows, teacher_log_probs))
    student_rows, _ = worker_log_probs(worker, sources, multiple, eos)
    width = max(s["responses"].numel() for s in sources)
    mask = torch.zeros(len(sources), width)
    student = torch.zeros(len(sources), width)
    for i, s in enumerate(sources):
        n = s["responses"].numel()
        mask[i, :n], student[i, :n] = 1, student_rows[i]
    delta, has_context = self_distill_delta(teacher, student, mask)

    def direct(prompt: list[int], response: torch.Tensor) -> torch.Tensor:
        """A plain transformers forward over prompt + response: token t of the response is
        predicted by the logits at position len(prompt) - 1 + t."""
        with torch.no_grad():
            logits = model(torch.tensor([prompt + response.tolist()])).logits[0].float()
        start = len(prompt) - 1
        return F.log_softmax(logits[start : start + len(response)], dim=-1).gather(-1, response[:, None])[:, 0]

    report = {"rows": rows, "teacher_max_abs_diff": 0.0, "delta_max_abs_diff": 0.0, "response_lengths": [], "teacher_prompt_lengths": []}
    for i in rows:
        response = sources[i]["responses"]
        expected_teacher = direct(teacher_prompts[i], response)
        expected_student = direct(sources[i]["prompts"].tolist(), response)
        n = response.numel()
        report["teacher_max_abs_diff"] = max(report["teacher_max_abs_diff"], (teacher[i] - expected_teacher).abs().max().item())
        report["delta_max_abs_diff"] = max(report["delta_max_abs_diff"], (delta[i, :n] - (expected_teacher - expected_student)).abs().max().item())
        report["delta_abs_mean_with_context"] = float(delta[i, :n].abs().mean())
        report["response_lengths"].append(n)
        report["teacher_prompt_lengths"].append(len(teacher_prompts[i]))
    report["has_context"] = has_context.tolist()
    report["teacher_micro_batch"], report["configured_micro_batch"] = teacher_micro_batch, multiple
    report["delta_without_context"] = [delta[i].tolist() for i in range(len(sources)) if i not in teacher]
    torch.distributed.destroy_process_group()
    return report


if __name__ == "__main__":
    print("TEACHER_PASS_REPORT " + json.dumps(main(sys.argv[1])))
