"""`paretune ui` in a real browser: headless Chromium (Debian's chromium + chromium-driver, which
.ci/run installs) driven by Selenium against a live server on loopback, over the run folders of
tests/test_ui.py.

PARETUNE_UI_SCREENSHOTS=docs/ui saves a picture of each page there (how docs/ui/*.png are made).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from paretune.serving.auth import hash_key
from paretune.ui.app import create_app
from paretune.ui.security import Access
from test_ui import KEY, live_server, make_runs, trained_runs, write_steps

CHROMEDRIVER, CHROMIUM = Path("/usr/bin/chromedriver"), Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(not CHROMEDRIVER.is_file() or not CHROMIUM.is_file(),
                       reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"),
    pytest.mark.usefixtures("one_torch_thread"),
]
SHOTS = os.environ.get("PARETUNE_UI_SCREENSHOTS")


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir) -> Path:
    return make_runs(tmp_path_factory.mktemp("ui-browser") / "runs", trained_runs(tmp_path_factory, tiny_model_dir))


@pytest.fixture(scope="module")
def url(root):
    with live_server(create_app([root])) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="paretune-ui-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # an element not there yet, or replaced while read
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting in the browser"
        time.sleep(0.1)


def shot(browser, name: str, mobile: bool = False) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(Path(SHOTS) / f"{name}.png"))
    if mobile:  # the same page at a phone's width
        browser.set_window_size(390, 844)
        time.sleep(0.5)
        browser.save_screenshot(str(Path(SHOTS) / f"{name}-mobile.png"))
        browser.set_window_size(1280, 900)


def css(browser, selector: str):
    return browser.find_elements("css selector", selector)


def test_runs_table_lists_sorts_and_shows_a_run_started_later(browser, url, root):
    browser.get(url + "/")
    ids = [row.get_attribute("data-id") for row in css(browser, "#runs-body tr")]
    assert set(ids) == {"cls-a", "cls-b", "sweep-a~runs~v1", "sweep-a~runs~v2", "live"}
    css(browser, 'a.sort[data-column="name"]')[0].click()  # by name, ascending
    until(lambda: "sort=name" in browser.current_url)
    by_name = [row.get_attribute("data-id") for row in css(browser, "#runs-body tr")]
    assert by_name == sorted(by_name)
    css(browser, 'a.sort[data-column="name"]')[0].click()  # again: descending
    until(lambda: [r.get_attribute("data-id") for r in css(browser, "#runs-body tr")] == sorted(by_name, reverse=True))
    shot(browser, "runs", mobile=True)
    late = root / "late-run"  # a run that starts while the page is open
    late.mkdir()
    shutil.copy(root / "cls-a" / "config.yaml", late / "config.yaml")
    try:
        until(lambda: css(browser, '#runs-body tr[data-id="late-run"]'), timeout=15)
    finally:
        shutil.rmtree(late)


def test_run_page_draws_curves_that_grow_while_the_run_trains(browser, url, root):
    browser.get(url + "/run/cls-a/")
    assert int(until(lambda: css(browser, '.chart[data-chart="loss"]')[0].get_attribute("data-points"))) == 2
    assert css(browser, '.chart[data-chart="loss"] canvas')  # uPlot drew it
    shot(browser, "run", mobile=True)
    browser.get(url + "/run/live/")
    loss = lambda: int(css(browser, '.chart[data-chart="loss"]')[0].get_attribute("data-points") or 0)  # noqa: E731
    start = until(loss)
    write_steps(root / "live", range(100, 106))
    until(lambda: loss() >= start + 6)
    assert int(css(browser, '.chart[data-chart="metric"]')[0].get_attribute("data-points")) >= 3


def test_frontier_shows_each_run_hover_names_it_and_click_opens_it(browser, url):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(url + "/frontier?min_metric=0.2")
    charts = css(browser, "figure.frontier-chart")
    assert [len(c.find_elements("css selector", "circle.pt")) for c in charts] == [3, 2]
    point = css(browser, 'figure.frontier-chart circle.pt[data-run="cls-b"]')[0]
    ActionChains(browser).move_to_element(point).perform()
    until(lambda: css(browser, "#tip")[0].text.startswith("cls-b: accuracy"))
    shot(browser, "frontier")
    point.click()
    until(lambda: browser.current_url.endswith("/run/cls-b/"))
    assert "cls-b" in css(browser, "h1")[0].text


def test_compare_selected_runs_shows_the_config_difference(browser, url):
    browser.get(url + "/?sort=name&desc=0")
    for run_id in ("cls-a", "cls-b"):
        css(browser, f'#runs-body input[value="{run_id}"]')[0].click()
    css(browser, "#compare-button")[0].click()
    until(lambda: "/compare" in browser.current_url)
    differing = [row.find_elements("css selector", "th")[0].text for row in css(browser, "tr.diff")]
    assert "training.lr" in differing
    until(lambda: int(css(browser, '#overlay .chart[data-chart="train_loss"]')[0].get_attribute("data-points")) == 2)
    shot(browser, "compare")
    browser.get(url + "/sweeps")
    assert "Best so far" in browser.page_source
    shot(browser, "sweeps")


def test_playground_answers_a_text(browser, url):
    browser.get(url + "/playground?run=cls-a")
    css(browser, "#text")[0].send_keys("a lovely and moving film")
    css(browser, "#predict")[0].click()
    answer = until(lambda: css(browser, '#answer[data-state="answered"]'), timeout=30)[0]
    assert answer.find_elements("css selector", "p.prediction")[0].text.split(" ")[0] in ("negative", "positive")
    shot(browser, "playground")


def test_playground_marks_ner_entities_in_the_text(browser, url):
    """The page's rendering of a NER answer (the Predictor's entities with character offsets),
    fed through a stubbed fetch: what a NER run's prediction looks like, without training one."""
    browser.get(url + "/playground?run=cls-a")
    browser.execute_script("""
        window.fetch = async () => new Response(JSON.stringify({prediction: {entities: [
            {type: "PER", text: "Ada Lovelace", start: 0, end: 12}, {type: "LOC", text: "London", start: 22, end: 28}]}}),
            {status: 200, headers: {"Content-Type": "application/json"}});""")
    css(browser, "#text")[0].send_keys("Ada Lovelace lived in London <b>.")
    css(browser, "#predict")[0].click()
    until(lambda: css(browser, '#answer[data-state="answered"]'))
    marks = browser.execute_script("return [...document.querySelectorAll('#answer p.entities mark')]"
                                   ".map((m) => [m.firstChild.textContent, m.querySelector('small').textContent])")
    assert marks == [["Ada Lovelace", "PER"], ["London", "LOC"]]
    assert css(browser, "#answer p.entities")[0].text.endswith("<b>.")  # the user's text stays text


def test_dark_follows_the_browser_and_a_phone_width_scrolls_no_page_sideways(browser, url):
    browser.get(url + "/run/cls-a/")
    until(lambda: css(browser, '.chart[data-chart="loss"]')[0].get_attribute("data-theme") == "light")
    background = "return getComputedStyle(document.body).backgroundColor"
    light = browser.execute_script(background)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        assert browser.execute_script(background) == "rgb(20, 23, 29)" != light
        until(lambda: css(browser, '.chart[data-chart="loss"]')[0].get_attribute("data-theme") == "dark")  # redrawn
        shot(browser, "run-dark")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    browser.set_window_size(390, 844)
    try:
        for page in ("/", "/run/cls-a/", "/frontier", "/compare?run=cls-a&run=cls-b", "/sweeps", "/playground?run=cls-a"):
            browser.get(url + page)
            wide = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 1, (page, wide)  # wide tables scroll inside their own box
    finally:
        browser.set_window_size(1280, 900)


def test_with_a_key_the_browser_must_log_in(browser, root):
    with live_server(create_app([root], Access((hash_key(KEY),)))) as base:
        browser.get(base + "/frontier")
        until(lambda: "/login" in browser.current_url)
        assert KEY not in browser.current_url
        css(browser, "#key")[0].send_keys("wrong-key-0123456789")
        css(browser, "#login button")[0].click()
        until(lambda: "not valid" in browser.page_source)
        css(browser, "#key")[0].send_keys(KEY)
        css(browser, "#login button")[0].click()
        until(lambda: browser.current_url == base + "/frontier")
        assert KEY not in browser.current_url and css(browser, "figure.frontier-chart")
        cookie = browser.get_cookie("paretune_ui_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and KEY not in cookie["value"]
        assert browser.execute_script("return document.cookie") == ""  # no script can read it


def test_playground_chats_with_a_generative_run(browser, tmp_path_factory):
    from test_serve_openai import trained_once  # the tiny chat run the serving tests share

    run = trained_once(tmp_path_factory, "chat")
    with live_server(create_app([run.parent])) as base:
        browser.get(base + "/playground?run=chat")
        for turn in ("hello", "and again"):
            css(browser, "#text")[0].send_keys(turn)
            css(browser, "#predict")[0].click()
            until(lambda: css(browser, '#answer[data-state="answered"]'), timeout=30)
            browser.execute_script("document.getElementById('answer').dataset.state = ''")
        bubbles = [(b.get_attribute("class").split()[:2], b.text) for b in css(browser, "#conversation .chat")]
        assert [cls for cls, _ in bubbles] == [["chat", "user"], ["chat", "assistant"]] * 2
        assert bubbles[2][1] == "and again" and bubbles[3][1]  # an answer, or why there is none
        shot(browser, "chat")
