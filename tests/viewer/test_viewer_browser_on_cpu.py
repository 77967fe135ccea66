"""The viewer page of a real 2-step CoARS run (the session's shared run, tests/conftest.py) in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, through selenium): both roles' dialogues are
shown, a coloured token's value is the dump's advantage of that token, the quantity and step
selectors change what is shown, a 30-step page opens in under 2 s. The screenshot goes to
``COARS_VIEWER_SCREENSHOT`` when set (docs/viewer.png is made that way).

Without a browser the tests skip with the reason, except under ``CI=true``, where they fail
(``make test`` installs the browser where apt-get works)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from coars_verl.credit_dump import read_credit_steps
from coars_verl.viewer.build import build

OPEN_LIMIT_S = 2.0
SIZE_LIMIT_30_STEPS = 4 * 1024 * 1024


def _missing_browser(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and no browser: {reason} (make test installs chromium and chromium-driver with apt-get)")
    pytest.skip(f"no headless browser: {reason} (apt-get install chromium chromium-driver; pip install selenium)")


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing_browser("selenium is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _missing_browser(f"chromium: {chromium}, chromedriver: {driver_path}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(coars_two_step_run, tmp_path_factory):
    _, run_dir, _ = coars_two_step_run
    out = build(run_dir, tmp_path_factory.mktemp("viewer") / "run.html")
    return out, read_credit_steps(run_dir / "rollouts" / "credit")


def _open(browser, path: Path) -> float:
    start = time.perf_counter()
    browser.get(path.resolve().as_uri())
    while browser.execute_script("return document.body && document.body.dataset.ready") != "1":
        if time.perf_counter() - start > 30:
            raise AssertionError("the page's script did not finish")
        time.sleep(0.01)
    return time.perf_counter() - start


def _select(browser, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", element_id)).select_by_value(value)


def _visible_section(browser):
    sections = [s for s in browser.find_elements("css selector", "section.step") if s.is_displayed()]
    assert len(sections) == 1
    return sections[0]


def _sample(steps, step, key):
    return next(s for p in steps if p["step"] == step for d in p["dialogues"] for s in d["samples"] if s["key"] == key)


def test_the_page_shows_both_roles_with_the_dumped_credit(browser, page):
    path, steps = page
    _open(browser, path)
    section = _visible_section(browser)
    assert section.get_attribute("data-step") == "2"
    assert section.find_elements("css selector", ".msg.recommender") and section.find_elements("css selector", ".msg.user")
    checked = 0
    for message in section.find_elements("css selector", ".msg[data-key]")[:6]:
        sample = _sample(steps, 2, message.get_attribute("data-key"))
        assert message.get_attribute("data-role") == sample["role"]
        for span in message.find_elements("css selector", ".t[data-i]")[:5]:
            i = int(span.get_attribute("data-i"))
            value = float(span.get_attribute("data-a"))
            assert value == sample["advantage"][i]  # the token's colour value is the dump's advantage of that token
            colour = span.value_of_css_property("background-color")
            if value > 0:
                assert colour.startswith("rgba(0, 150, 60"), colour
            elif value < 0:
                assert colour.startswith("rgba(214, 39, 40"), colour
            checked += value != 0
    assert checked > 0
    teachers = section.find_elements("css selector", ".teacher .source")
    assert teachers and {t.text for t in teachers} <= {"memory", "sibling", "hindsight"}


def test_the_quantity_selector_recolours_by_delta(browser, page):
    path, steps = page
    _open(browser, path)
    _select(browser, "quantity", "d")
    section = _visible_section(browser)
    spans = [s for s in section.find_elements("css selector", ".t[data-d]") if float(s.get_attribute("data-d")) != 0][:10]
    assert spans, "no token with a nonzero delta on step 2"
    for span in spans:
        delta = float(span.get_attribute("data-d"))
        key = span.find_element("xpath", "./ancestor::div[@data-key]").get_attribute("data-key")
        assert delta == _sample(steps, 2, key)["delta"][int(span.get_attribute("data-i"))]
        colour = span.value_of_css_property("background-color")
        assert colour.startswith("rgba(0, 150, 60" if delta > 0 else "rgba(214, 39, 40") or colour == "rgb(0, 150, 60)" or colour == "rgb(214, 39, 40)", colour


def test_the_step_selector_changes_what_is_shown(browser, page):
    path, steps = page
    _open(browser, path)
    _select(browser, "step", "1")
    section = _visible_section(browser)
    assert section.get_attribute("data-step") == "1"
    shown = [a.get_attribute("data-session") for a in section.find_elements("css selector", "article.dlg")]
    assert shown == [d["session"] for d in steps[0]["dialogues"]]
    keys = {m.get_attribute("data-key") for m in section.find_elements("css selector", ".msg[data-key]")}
    assert keys <= {s["key"] for d in steps[0]["dialogues"] for s in d["samples"]}
    spans = section.find_elements("css selector", ".t[data-i]")
    assert any(s.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)" for s in spans[:50])  # step 1 painted too
    _select(browser, "step", "2")
    _select(browser, "quantity", "d")  # the teacher's per-token signal, for the README's screenshot
    browser.execute_script("document.querySelector('section.step:not([hidden]) table.list').scrollIntoView()")
    screenshot = Path(os.environ.get("COARS_VIEWER_SCREENSHOT") or path.with_suffix(".png"))
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_a_30_step_page_stays_small_and_opens_fast(browser, page, tmp_path):
    """30 steps made of this run's two dumped steps (same recipe, 4 dialogues a step): the page's size
    and the time until its script has painted the shown step, printed for the record."""
    from coars_verl.credit_dump import write_step

    _, steps = page
    run = tmp_path / "run30"
    for n in range(1, 31):
        write_step(run / "rollouts", {**steps[n % 2], "step": n})
    rows = [json.dumps({"step": n, "data": {"coars/dialogue/hit_rate": n / 30}}) for n in range(1, 31)]
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    out = build(run)
    size = out.stat().st_size
    seconds = min(_open(browser, out) for _ in range(2))
    print(f"\nviewer: 30-step page {size / 1024:.0f} KiB, opened in {seconds:.2f} s in headless chromium")
    assert size < SIZE_LIMIT_30_STEPS, size
    assert seconds < OPEN_LIMIT_S, seconds
