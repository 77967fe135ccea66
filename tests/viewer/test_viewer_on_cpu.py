"""The viewer's reading of the credit dump and of an evaluation's dialogue.jsonl, on fake files whose
values tell every token, role and quantity apart. Each test names the wrong version it catches."""

import json
import subprocess
import sys

import pytest

from coars_verl.composition import setting_problems
from coars_verl.credit_dump import DumpConfig, dumped_rows, read_credit_steps, step_payload, write_step
from coars_verl.viewer.__main__ import main
from coars_verl.viewer.build import build, load_page
from viewer_fakes import PageReader, fake_sample, write_fake_evaluation, write_fake_run


@pytest.fixture
def run_page(tmp_path):
    run = write_fake_run(tmp_path / "run")
    page = build(run)
    return run, read_credit_steps(run / "rollouts" / "credit"), PageReader(page.read_text())


def _samples(steps):
    return {s["key"]: (payload["step"], s) for payload in steps for d in payload["dialogues"] for s in d["samples"]}


def test_each_token_shows_its_own_values(run_page):
    """Catches a value shifted by one token, and a quantity under another's name (advantage shown
    where delta or the outcome advantage was asked): every span's data-a/o/d/w are the dump's lists at
    its own index, and its text is that index's token."""
    _, steps, page = run_page
    samples, seen = _samples(steps), 0
    for message in page.messages:
        _, sample = samples[message["key"]]
        for span in message["tokens"]:
            i = int(span["data-i"])
            assert span["text"] == sample["tokens"][i]
            assert float(span["data-a"]) == sample["advantage"][i]
            assert float(span["data-o"]) == sample["outcome_advantage"][i]
            assert float(span["data-d"]) == sample["delta"][i]
            assert float(span["data-w"]) == sample["weight"][i]
            seen += 1
    assert seen == 2 * 2 * (3 + 3)  # steps x dialogues x (recommender's 3 + user's 3 trained tokens)


def test_the_chat_alternates_the_roles_with_their_own_trained_tokens(run_page):
    """Catches the roles swapped (a recommender bubble holding the user's sample) and the masked
    tokens (the other role's text as the sample saw it) shown as the sample's own: turn by turn,
    recommender then user, each bubble only its sample's mask-1 run."""
    _, _, page = run_page
    first = [m for m in page.messages if m["step"] == "1"][:4]
    assert [m["role"] for m in first] == ["recommender", "user", "recommender", "user"]
    assert [m["key"].endswith("_0") for m in first] == [True, False, True, False]
    assert [[int(t["data-i"]) for t in m["tokens"]] for m in first] == [[0, 1], [0, 1], [4], [3]]
    assert [m["text"] for m in first] == ["rec0rec1", "use0use1", "rec4", "use3"]


def test_the_teacher_context_stands_beside_the_sample_it_scored(run_page):
    """Catches a context shown under the other role's sample, or its source lost."""
    _, _, page = run_page
    boxes = {t["key"]: t for t in page.teachers}
    rec, user = boxes["uid10_0_0"], boxes["uid10_0_1"]
    assert rec["role"] == "recommender" and "sibling" in rec["text"] and "a sibling of uid10_0" in rec["text"]
    assert user["role"] == "user" and "no teacher context" in user["text"] and "sibling" not in user["text"]


def test_one_section_per_step_the_last_shown_and_plots_from_the_metrics(run_page):
    """Catches a step missing from the selector or two steps shown at once; the half-written last
    line of metrics.jsonl (a run still going) is skipped, not an error."""
    _, _, page = run_page
    assert page.options == ["1", "2"]
    assert [(s["step"], s["hidden"]) for s in page.sections] == [("1", True), ("2", False)]
    assert page.svgs == 4
    loaded = load_page(run_page[0])
    context_plot = loaded.plots[2]
    assert "memory" in context_plot and "sibling" in context_plot and context_plot.count("<polyline") == 2


def test_dialogue_list_shows_hit_turns_and_both_rewards(run_page):
    """Catches the roles' rewards swapped in the list."""
    run, _, _ = run_page
    step = load_page(run).steps[0]
    first = step["dialogues"][0]
    assert first["rewards"] == {"recommender": 1.0, "user": 10.0} and first["summary"]["turns"] == 2


def test_an_evaluation_folder_opens_with_verdicts_and_metrics_and_no_credit(tmp_path):
    """The evaluation's dialogue.jsonl: the recommender's answers and the user's verdicts in turn
    order, a dialogue whose user never acted has no user bubble, no credit colours, results.json's
    metrics in the table; a line being appended is skipped."""
    out = write_fake_evaluation(tmp_path / "eval")
    html = build(out, tmp_path / "page.html").read_text()
    page = PageReader(html)
    assert [(m["role"], m["text"]) for m in page.messages] == [
        ("recommender", "Item: Heat\nReason: tense"), ("user", "No. too loud"),
        ("recommender", "Item: Fargo\nReason: snowy"), ("user", "Yes. love it"), ("recommender", "Item:  Reason: "),
    ]
    assert all("data-a" not in t for m in page.messages for t in m["tokens"])
    assert "verdict: no" in html and "dialogue/hit_at_1" in html and 'id="quantity"' not in html
    assert "(target)" in html and "(invalid: no_item)" in html  # the turn's own notes, from the summary's per-turn lists


def test_dumped_rows_are_the_first_sessions_in_key_order_with_every_role():
    """Catches batch order instead of key order, one role dropped, padding dumped."""
    keys = ["b_0_0", "a_1_0", "b_0_1", "a_1_1", "a_0_0", "a_0_1", "pad_0_0"]
    real = [True] * 6 + [False]
    assert dumped_rows(keys, real, 2) == [4, 5, 1, 3]
    assert dumped_rows(keys, real, 0) == []
    assert dumped_rows(keys, real, 9) == [4, 5, 1, 3, 0, 2]


def test_the_dump_option_is_a_checked_coars_section():
    assert DumpConfig.from_mapping(None).dialogues_per_step == 4
    assert DumpConfig.from_mapping({"dialogues_per_step": 2}).dialogues_per_step == 2
    with pytest.raises(ValueError, match="coars.dump: unknown key"):
        DumpConfig.from_mapping({"dialogs": 2})
    with pytest.raises(ValueError, match=">= 0"):
        DumpConfig.from_mapping({"dialogues_per_step": -1})
    assert setting_problems({"coars": {"dump": {"dialogues_per_step": 1}}}) == []
    assert any("coars.dump" in p for p in setting_problems({"coars": {"dump": {"dialogues_per_step": "2"}}}))


def test_only_whole_files_of_a_known_version_are_read(tmp_path):
    """A temporary file (a write in progress) is not read; a newer format version is refused by name."""
    write_step(tmp_path, step_payload(3, {"mode": "off"}, [fake_sample("s_0_0", "recommender", [1], 1.0)]))
    (tmp_path / "credit" / ".step_4.json.x.tmp").write_text('{"format": "coars_cre')
    assert [p["step"] for p in read_credit_steps(tmp_path / "credit")] == [3]
    (tmp_path / "credit" / "step_5.json").write_text(json.dumps({"format": "coars_credit", "version": 99}))
    with pytest.raises(ValueError, match="version"):
        read_credit_steps(tmp_path / "credit")


def test_the_command_writes_one_self_contained_page(tmp_path, capsys):
    """No network resource (no src/href to http, no external script or stylesheet)."""
    run = write_fake_run(tmp_path / "run")
    assert main([str(run), "--out", str(tmp_path / "v.html")]) == 0
    html = (tmp_path / "v.html").read_text()
    assert "v.html" in capsys.readouterr().out
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert "<script src" not in html and "<link" not in html
    assert main([str(tmp_path / "nothing")]) == 2


def test_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "coars_verl.viewer", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "RUN_DIR" in out.stdout and "--out" in out.stdout


def test_every_sample_of_a_single_turn_session_is_shown(tmp_path):
    """Catches samples of one role overwriting each other (a single-turn task's answers of one prompt)."""
    samples = [fake_sample(f"s_0_{i}", "single", [1, 1], float(i)) for i in range(3)]
    write_step(tmp_path / "rollouts", step_payload(1, {"mode": "rlsd", "lambda": 0.5, "eps_w": 0.2}, samples))
    page = PageReader(build(tmp_path).read_text())
    assert [m["key"] for m in page.messages] == ["s_0_0", "s_0_1", "s_0_2"]
