"""Fake credit dumps and evaluation folders for the viewer's tests, and a small reader of its page."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from coars_verl.credit_dump import step_payload, write_step


def fake_sample(key, role, mask, base, teacher=None):
    """A dumped sample whose values tell every quantity and token apart: advantage base + i,
    outcome base + i + 0.25, delta -(base + i) / 10 (0 off the mask), weight 1 + i / 100."""
    n = len(mask)
    return {
        "row": 0, "key": key, "session": key.rsplit("_", 1)[0], "role": role, "reward": base / 10,
        "response_ids": list(range(100, 100 + n)), "tokens": [f"{role[:3]}{i}" for i in range(n)], "response_mask": mask,
        "advantage": [base + i for i in range(n)], "outcome_advantage": [base + i + 0.25 for i in range(n)],
        "delta": [-(base + i) / 10 if m else 0.0 for i, m in enumerate(mask)], "weight": [1 + i / 100 for i in range(n)],
        "teacher": teacher,
        "summary": {"user_id": "u1", "target_title": "Heat", "turns": 2, "hit": base > 10, "k_hit": 2, "end_reason": "accepted"},
    }


def write_fake_run(run_dir: Path, steps=(1, 2), metrics=True) -> Path:
    """A training run folder: rollouts/credit/step_N.json with 2 dialogues each, and metrics.jsonl."""
    for step in steps:
        samples = []
        for d in range(2):
            session = f"uid{step}{d}_0"
            # recommender: turn 1 (tokens 0-1), the user's message (2-3, masked), turn 2 (4)
            samples.append(fake_sample(f"{session}_0", "recommender", [1, 1, 0, 0, 1], 10 * step + d,
                                       teacher={"source": "sibling", "text": f"a sibling of {session}"}))
            # user: answer to turn 1 (0-1), the recommender's turn 2 (2, masked), answer (3)
            samples.append(fake_sample(f"{session}_1", "user", [1, 1, 0, 1], 100 * step + d))
        write_step(run_dir / "rollouts", step_payload(step, {"mode": "rlsd", "lambda": 0.4, "eps_w": 0.2, "eta": 0.1, "clip": 1.0}, samples))
    if metrics:
        lines = [json.dumps({"step": s, "data": {"coars/dialogue/hit_rate": s / 4, "coars/rec/reward_mean": 0.1 * s, "coars/user/reward_mean": -0.1 * s,
                                                "coars/sd/context_share/sibling": 0.5, "coars/sd/context_share/memory": 0.25 * s,
                                                "coars/sd/all/delta_mean": -0.01 * s}}) for s in steps]
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 9, "da')  # a line being written
    return run_dir


def write_fake_evaluation(out: Path) -> Path:
    rows = [
        {"key": "test-0", "user_id": "u0", "s": 0.1, "summary": {
            "user_id": "u0", "target_title": "Fargo", "turns": 2, "hit": True, "k_hit": 2, "end_reason": "accepted", "valid_ratio": 1.0,
            "false_accepts": 0, "false_rejects": 0, "rec_valid": [True, True], "rec_item_titles": ["Heat", "Fargo"],
            "rec_reasons": ["tense", "snowy"], "is_target": [False, True], "user_decisions": [0, 1], "user_reasons": ["too loud", "love it"],
            "rec_raw": ["Item: Heat\nReason: tense", "Item: Fargo\nReason: snowy"], "user_raw": ["No. too loud", "Yes. love it"]}},
        {"key": "test-1", "user_id": "u1", "s": 0.1, "summary": {
            "user_id": "u1", "target_title": "Babe", "turns": 1, "hit": False, "k_hit": 0, "end_reason": "max_turns", "valid_ratio": 0.0,
            "rec_valid": [False], "rec_item_titles": [""], "rec_reasons": [""], "rec_errors": ["no_item"], "is_target": [False],
            "user_decisions": [-1], "user_reasons": [""]}},
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "dialogue.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"key": "test-2", "su')
    (out / "results.json").write_text(json.dumps({"schema": "coars_eval/1", "metrics": {"dialogue": {"hit_at_1": 0.5, "valid_ratio": 0.667}}}))
    return out


class PageReader(HTMLParser):
    """Each chat message (its attributes and its token spans' attributes and texts), the step
    sections, the step options and the teacher boxes of a viewer page."""

    def __init__(self, html: str):
        super().__init__()
        self.messages, self.sections, self.options, self.teachers, self.svgs = [], [], [], [], 0
        self._span = self._teacher = None
        self.feed(html)

    _depth = 0
    _teacher_depth = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div":
            self._depth += 1
        cls = a.get("class", "")
        if tag == "section" and "step" in cls:
            self.sections.append({"step": a["data-step"], "hidden": "hidden" in a})
        elif tag == "option" and self._in_step_select:
            self.options.append(a["value"])
        elif tag == "select":
            self._in_step_select = a.get("id") == "step"
        elif tag == "div" and cls.startswith("msg "):
            self.messages.append({"role": a["data-role"], "key": a.get("data-key"), "step": self.sections[-1]["step"], "tokens": [], "text": ""})
        elif tag == "span" and cls == "t":
            self._span = {**a, "text": ""}
        elif tag == "div" and cls == "teacher":
            self._teacher, self._teacher_depth = {"key": a.get("data-key"), "role": a.get("data-role"), "text": ""}, self._depth
            self.teachers.append(self._teacher)
        elif tag == "svg":
            self.svgs += 1

    _in_step_select = False

    def handle_endtag(self, tag):
        if tag == "div":
            if self._teacher_depth == self._depth:
                self._teacher = self._teacher_depth = None
            self._depth -= 1
        if tag == "span" and self._span is not None:
            self.messages[-1]["tokens"].append(self._span)
            self.messages[-1]["text"] += self._span["text"]
            self._span = None
        elif tag == "select":
            self._in_step_select = False

    def handle_data(self, data):
        if self._span is not None:
            self._span["text"] += data
        if self._teacher is not None:
            self._teacher["text"] += data
