"""PNG figures: learning curves from verl file-logger metrics, bar chart of evaluation results."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("matplotlib")

from coars_verl import plots  # noqa: E402
from coars_verl.eval.report import make_result  # noqa: E402
from coars_verl.eval.store import write_json_atomic  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    height, width = image.shape[:2]
    assert width >= 600 and height >= 400
    assert image[..., :3].std() > 0.01  # not a blank canvas


def write_metrics(path, steps=12, shift=0.0):
    with open(path, "w") as fh:
        for step in range(1, steps + 1):
            data = {
                "coars/rec/reward_mean": -0.5 + 0.05 * step + shift,
                "coars/user/reward_mean": 0.2 + 0.03 * step,
                "coars/dialogue/hit_rate": min(1.0, 0.05 * step + shift),
                "coars/rec/valid_ratio": 0.5 + 0.03 * step,
                "timing_s/step": 10.0,
            }
            if step % 3:  # not logged at every step
                data["coars/user/accuracy"] = 0.5 + 0.02 * step
            if step == 5:
                data["coars/rec/reward_mean"] = math.nan  # skipped, not drawn
            fh.write(json.dumps({"step": step, "data": data}) + "\n")
    return path


def test_series_and_smoothing():
    rows = [{"step": 2, "a": 1.0}, {"step": 1, "a": 3.0}, {"step": 3}, {"step": 4, "a": float("nan")}, {"step": 5, "a": True}]
    assert plots.series(rows, "a") == ([1, 2], [3.0, 1.0])
    assert plots.trailing_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_curves_png(tmp_path):
    a = write_metrics(tmp_path / "a.jsonl")
    b = write_metrics(tmp_path / "b.jsonl", shift=0.1)
    out = tmp_path / "figs" / "curves.png"
    assert plots.main(["curves", "--metrics", str(a), str(b), "--labels", "coars", "grpo", "--smooth", "3", "--out", str(out)]) == 0
    check_png(out)
    single = plots.plot_curves([a], tmp_path / "one.png")
    check_png(single)


def test_curves_without_any_curve_metric_fail(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"step": 1, "data": {"timing_s/step": 1.0}}) + "\n")
    with pytest.raises(ValueError, match="none of the curve metrics"):
        plots.plot_curves([path], tmp_path / "x.png")
    assert plots.main(["curves", "--metrics", str(path), "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def result(label, hit, valid, f1, with_user_sim=True):
    rec = {"dialogues": 20, "hit_at_1": hit, "hit_at_1_turn1": hit / 2, "valid_ratio": valid, "turns_mean": 3.0}
    sim = {"users": 10, "f1_micro": f1, "f1_macro": f1 * 0.9} if with_user_sim else None
    return make_result(label=label, kind="model", complete=True, model=None, data={}, config={}, counts={},
                       recommendation=rec, user_sim=sim)


def test_bars_png(tmp_path):
    paths = []
    for name, res in (("zero", result("zero-shot", 0.05, 0.4, 0.3)), ("coars", result("CoARS", 0.2, 0.95, 0.45)),
                      ("pop", result("popularity", 0.1, 1.0, None, with_user_sim=False))):
        paths.append(tmp_path / f"{name}.json")
        write_json_atomic(paths[-1], res)
    out = tmp_path / "bars.png"
    assert plots.main(["bars", "--results", *map(str, paths), "--out", str(out)]) == 0
    check_png(out)
    assert plots.main(["bars", "--results", str(tmp_path / "nope.json"), "--out", str(tmp_path / "n.png")]) == 2
