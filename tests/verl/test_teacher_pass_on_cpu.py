"""The teacher pass through verl's own actor worker (CPU, in a fresh process): sent with the
trainer's own micro-batch size, the log-probs the trainer's teacher records get back are, token by token, those of a plain transformers forward over
(teacher prompt + the student's response), for samples of different lengths in one padded batch;
delta is teacher minus student there and exactly 0 for a sample without context.

A teacher record whose prompt/response boundary is off by one token, a response shifted against
its log-probs, or teacher and student swapped fails here."""

import json
import subprocess
import sys
from pathlib import Path

WORKER_SCRIPT = Path(__file__).with_name("teacher_pass_worker.py")


def test_teacher_log_probs_from_the_worker_equal_a_direct_forward(tiny_model_path):
    proc = subprocess.run([sys.executable, str(WORKER_SCRIPT), str(tiny_model_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("TEACHER_PASS_REPORT "))
    report = json.loads(line.split(" ", 1)[1])
    assert report["rows"] == [0, 2] and report["has_context"] == [True, False, True]
    # the trainer's per-call micro-batch size (2 rows, no padding) reaches verl's engine in place of the configured one
    assert report["teacher_micro_batch"] == 2 < report["configured_micro_batch"], report
    assert len(set(report["response_lengths"])) == 2 and len(set(report["teacher_prompt_lengths"])) == 2
    assert report["teacher_max_abs_diff"] < 1e-5, report
    assert report["delta_max_abs_diff"] < 1e-5, report
    assert report["delta_abs_mean_with_context"] > 1e-4, report  # the context does change the scores
    assert all(v == 0.0 for row in report["delta_without_context"] for v in row)
