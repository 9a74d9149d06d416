"""The web page in headless Chromium (Debian's chromium and chromedriver, driven by
selenium; nothing downloads a browser): a real `genre serve` with the fake LLM engine,
whose every call waits llm.fake_delay_s so the stream's events come apart.

Covers the list arriving before the rationales, a dislike removing the item from the next
answer, a chat turn and resuming its session, a hostile catalog title shown as text, the
key prompt, the status and experiments tabs, keyboard use, a phone-width screen and the
browser console. Screenshots go to runs/web/ (docs/img/ holds two of them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from servers import free_port, serve

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]
CATALOG = Path(__file__).parent / "fixtures" / "catalog.jsonl"
SHOTS = Path(os.environ.get("GENRE_WEB_SHOTS", ROOT / "runs" / "web"))
CHROMEDRIVER = "/usr/bin/chromedriver"
KEY = "web-test-key-5d1e-a9"  # service.api_key: at least 16 characters
K = 5
R = 3  # rationale_top_r
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2;alert(1)">Sneaky'
# Users who watch comedies together (m4..m12) and a horror fan: item-kNN is fitted on them.
ROWS = [
    f"c{u},m{i},{t},4.5"
    for u in range(6)
    for t, i in enumerate((4, 5, 6, 7, 8, 9, 10, 11, 12)[(u % 3) * 2 : (u % 3) * 2 + 5])
] + ["h0,m1,0,5", "h0,m2,1,5"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


def _genre(*args: str) -> list[str]:
    return [sys.executable, "-m", "genre_agent.cli", *args]


def _write_config(folder: Path, port: int, service: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "genre.toml"
    path.write_text(
        f'[store]\npath = "{folder / "chroma"}"\ninteractions_path = "{folder / "i.sqlite"}"\n'
        f'[profile]\npath = "{folder / "p.sqlite"}"\n'
        f'[chat]\nsessions_path = "{folder / "chat.sqlite"}"\n'
        '[embedder]\nkind = "fake"\n'
        '[llm]\nengine = "fake"\nfake_delay_s = 1.0\n'
        "[retrieval]\nn_candidates = 20\n"
        "sources = { embedding = 1.0, itemknn = 1.0, bm25 = 0.5, popularity = 0.5 }\n"
        f"[ranking]\nk = {K}\nrationale_top_r = {R}\n"
        f"[service]\nport = {port}\nqueue_metrics = false\nllm_budget_s = 120\n{service}\n"
    )
    return path


@contextmanager
def _server(folder: Path, service: str = "") -> Iterator[str]:
    """Index the fixture catalog (plus an item with a hostile title) and its interactions,
    fit, and run `genre serve` until the block ends; yields the base URL."""
    port = free_port()
    cfg = _write_config(folder, port, service)
    hostile = {
        "id": "m99",
        "title": HOSTILE,
        "text": "Genres: Comedy. Tags: sneaky, hostile markup.",
        "metadata": {"year": 2020, "genres": "Comedy", "genre_comedy": True},
    }
    catalog = folder / "catalog.jsonl"
    catalog.write_text(CATALOG.read_text() + json.dumps(hostile) + "\n")
    (folder / "inter.csv").write_text("user_id,item_id,timestamp,rating\n" + "\n".join(ROWS))
    for args in (
        ("index", str(catalog), "-c", str(cfg), "--interactions", str(folder / "inter.csv")),
        ("fit", "-c", str(cfg)),
    ):
        done = subprocess.run(_genre(*args), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    base = f"http://127.0.0.1:{port}"
    with serve(_genre("serve", "-c", str(cfg)), f"{base}/health/ready", folder / "serve.log", 300):
        yield base


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _server(tmp_path_factory.mktemp("web")) as url:
        yield url


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    browser = _chromium()
    if browser is None or not Path(CHROMEDRIVER).exists():
        pytest.skip("chromium and chromium-driver are not installed (scripts/install-servers.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1200,800",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver path is given, so selenium-manager never runs (it would try to download).
    drv = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    drv.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield drv
    finally:
        drv.quit()


# -- helpers ---------------------------------------------------------------------------------


def _wait(drv: Any, condition: Any, timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.1).until(condition)


def _js(drv: Any, script: str, *args: Any) -> Any:
    return drv.execute_script(script, *args)


def _console_errors(drv: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    """SEVERE browser log entries since the last call, minus those naming ``allowed``."""
    logs = drv.get_log("browser")
    return [
        e["message"]
        for e in logs
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)
    ]


def _open(drv: Any, url: str) -> None:
    drv.get(url)
    # boot() reads /page.json before it shows a view or the key form.
    _wait(drv, lambda d: _js(d, "return document.body.dataset.booted") == "1")


def _pick_ids(drv: Any, list_id: str = "rec-list") -> list[str]:
    return _js(
        drv, f"return [...document.querySelectorAll('#{list_id} > li')].map(li => li.dataset.id)"
    )


def _recommend(drv: Any, user: str = "", query: str = "") -> None:
    from selenium.webdriver.common.by import By

    for field, value in (("rec-user", user), ("rec-query", query)):
        box = drv.find_element(By.ID, field)
        box.clear()
        if value:
            box.send_keys(value)
    drv.find_element(By.ID, "rec-submit").click()
    _wait(
        drv, lambda d: _js(d, "return document.getElementById('rec-list').dataset.state") == "done"
    )


# -- tests -----------------------------------------------------------------------------------


def test_the_list_arrives_before_the_rationales_with_its_evidence(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, base + "/")
    _console_errors(driver)
    # Record the list's state after every change the page makes (a MutationObserver runs
    # after each task, so each stream chunk the page renders gives its own snapshot).
    _js(
        driver,
        """
        const list = document.getElementById('rec-list');
        window.__snapshots = [];
        new MutationObserver(() => window.__snapshots.push({
          picks: list.querySelectorAll('.pick').length,
          written: list.querySelectorAll('.rationale.written').length,
          pending: list.querySelectorAll('.rationale.pending').length,
        })).observe(list, {childList: true, subtree: true, characterData: true});
        """,
    )
    driver.find_element(By.ID, "rec-user").send_keys("c0")
    driver.find_element(By.ID, "rec-submit").click()
    _wait(driver, lambda d: len(_pick_ids(d)) == K)
    driver.save_screenshot(str(SHOTS / "recommend-streaming.png"))
    _wait(
        driver,
        lambda d: _js(d, "return document.getElementById('rec-list').dataset.state") == "done",
    )
    snaps = _js(driver, "return window.__snapshots")
    listed = [s for s in snaps if s["picks"] == K]
    assert listed, snaps
    # The list was on the page with every rationale still being written ...
    assert listed[0] == {"picks": K, "written": 0, "pending": K}, snaps
    # ... and the rationales came after it, one at a time.
    assert [s["written"] for s in listed if s["written"]][:1] == [1], snaps
    final = snaps[-1]
    assert final["written"] == R and final["pending"] == 0, snaps
    cards = driver.find_elements(By.CSS_SELECTOR, "#rec-list .pick")
    for card in cards[:R]:
        rationale = card.find_element(By.CSS_SELECTOR, ".rationale").text
        assert rationale.startswith("Like "), rationale
        # The evidence next to it: the liked item it cites, the shared attributes.
        liked = card.find_elements(By.CSS_SELECTOR, ".evidence .liked li")
        assert liked, card.text
        cited = card.find_elements(By.CSS_SELECTOR, ".evidence .liked li.cited .title")
        assert cited and cited[0].text in rationale, (cited and cited[0].text, rationale)
        assert card.find_elements(By.CSS_SELECTOR, ".evidence .chip"), card.text
    for card in cards[R:]:
        assert "rationale_top_r" in card.find_element(By.CSS_SELECTOR, ".rationale").text
    assert "ranked by" in driver.find_element(By.ID, "rec-status").text
    driver.save_screenshot(str(SHOTS / "recommend.png"))
    assert _console_errors(driver) == []


def test_a_dislike_removes_the_item_from_the_next_answer(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, base + "/")
    _recommend(driver, user="c1")
    before = _pick_ids(driver)
    top = before[0]
    button = driver.find_element(By.CSS_SELECTOR, f'#rec-list li[data-id="{top}"] button.dislike')
    button.click()
    _wait(driver, lambda d: button.get_attribute("aria-pressed") == "true")
    assert "Sent: dislike" in driver.find_element(By.ID, "rec-status").text
    _recommend(driver, user="c1")
    after = _pick_ids(driver)
    assert top not in after and len(after) == K, (top, before, after)
    # A like is sent the same way (and shows as pressed).
    like = driver.find_element(By.CSS_SELECTOR, "#rec-list li button.like")
    like.click()
    _wait(driver, lambda d: like.get_attribute("aria-pressed") == "true")
    # The Similar button of a pick fills the similar panel.
    driver.find_element(By.CSS_SELECTOR, "#rec-list li button.similar").click()
    _wait(driver, lambda d: len(_pick_ids(d, "similar-list")) > 0)
    assert driver.find_element(By.ID, "similar-title").text.startswith("Similar to ")
    assert _console_errors(driver) == []


def test_a_chat_turn_shows_picks_and_wishes_and_the_session_resumes(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, base + "/")
    driver.find_element(By.ID, "tab-chat").click()
    driver.find_element(By.ID, "chat-user").send_keys("c2")
    driver.find_element(By.CSS_SELECTOR, "#chat-start button[type=submit]").click()
    _wait(driver, lambda d: d.find_element(By.ID, "chat-send").is_enabled())
    session = _js(driver, "return document.getElementById('chat-status').textContent")
    box = driver.find_element(By.ID, "chat-message")
    box.send_keys("a comedy from the 2000s, no horror")
    driver.find_element(By.ID, "chat-send").click()
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chat-turns > li")) == 1)
    turn = driver.find_element(By.CSS_SELECTOR, "#chat-turns > li")
    wishes = [c.text for c in turn.find_elements(By.CSS_SELECTOR, ".wishes .chip")]
    assert "Comedy" in wishes and "no Horror" in wishes, wishes
    assert any(w.startswith("year \u2265 2000") for w in wishes), wishes
    picks = turn.find_elements(By.CSS_SELECTOR, ".chat-pick")
    assert picks, turn.text
    for pick in picks:
        year = int(pick.find_element(By.CSS_SELECTOR, ".muted").text.split()[0])
        assert 2000 <= year <= 2009, pick.text
    active = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#chat-wishes .chip")]
    assert {"Comedy", "no Horror", "from 2000", "until 2009"} <= set(active), active
    driver.save_screenshot(str(SHOTS / "chat.png"))
    # A second turn, then resume the session from the list after a reload.
    box.send_keys("something else")
    driver.find_element(By.ID, "chat-send").click()
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chat-turns > li")) == 2)
    sid = session.split()[1]
    _open(driver, base + "/")
    driver.find_element(By.ID, "tab-chat").click()
    _wait(
        driver,
        lambda d: (
            sid
            in _js(
                d, "return [...document.getElementById('chat-sessions').options].map(o => o.value)"
            )
        ),
    )
    _js(driver, "document.getElementById('chat-sessions').value = arguments[0]", sid)
    driver.find_element(By.CSS_SELECTOR, "#chat-resume button[type=submit]").click()
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chat-turns > li")) == 2)
    assert sid in driver.find_element(By.ID, "chat-status").text
    assert driver.find_element(By.CSS_SELECTOR, "#chat-turns .said").text == (
        "a comedy from the 2000s, no horror"
    )
    assert _console_errors(driver) == []


def test_a_hostile_title_is_shown_as_text(driver: Any, base: str) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _open(driver, base + "/")
    _recommend(driver, query="sneaky hostile markup")
    assert "m99" in _pick_ids(driver)
    title = driver.find_element(By.CSS_SELECTOR, '#rec-list li[data-id="m99"] h3.title')
    assert _js(driver, "return arguments[0].textContent", title) == HOSTILE
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert _js(driver, "return window.__pwned") is None
    # No element was made from the title: no img or script anywhere in the page's body.
    assert _js(driver, "return document.querySelectorAll('main img, main script').length") == 0
    # The Similar button of the hostile item puts its title in the panel heading as text too.
    driver.find_element(By.CSS_SELECTOR, '#rec-list li[data-id="m99"] button.similar').click()
    _wait(driver, lambda d: len(_pick_ids(d, "similar-list")) > 0)
    heading = driver.find_element(By.ID, "similar-title")
    assert _js(driver, "return arguments[0].textContent", heading) == f"Similar to {HOSTILE}"
    assert _js(driver, "return document.querySelectorAll('main img, main script').length") == 0
    assert _js(driver, "return window.__pwned") is None
    assert _console_errors(driver) == []


def test_status_shows_health_models_and_metric_charts(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, base + "/")
    _recommend(driver, user="c0")  # at least one request on /v1/recommend to chart
    driver.find_element(By.ID, "tab-status").click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#metrics svg"))
    health = driver.find_element(By.ID, "health").text
    assert "ready" in health and "fake" in health, health
    models = driver.find_element(By.ID, "models").text
    assert "itemknn" in models and "interactions" in models, models
    captions = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#metrics figcaption")]
    assert "Requests per endpoint" in captions, captions
    bars = driver.find_elements(By.CSS_SELECTOR, "#metrics svg.bars text")
    assert any(t.text == "/v1/recommend" for t in bars), [t.text for t in bars]
    driver.save_screenshot(str(SHOTS / "status.png"))
    assert _console_errors(driver) == []


REPORT = {
    "experiment": "prompt-ab",
    "kind": "ab",
    "variants": [
        {
            "name": "control",
            "users": 120,
            "exposures": 600,
            "rate": 0.21,
            "rate_ci": [0.17, 0.25],
            "mrr": 0.31,
            "mrr_ci": [0.27, 0.35],
            "llm_tokens": 1000,
            "llm_seconds": 12.5,
        },
        {
            "name": "treatment",
            "users": 118,
            "exposures": 590,
            "rate": 0.27,
            "rate_ci": [0.22, 0.32],
            "mrr": 0.36,
            "mrr_ci": [0.31, 0.41],
            "llm_tokens": 1200,
            "llm_seconds": 14.0,
        },
    ],
    # The shape of genre_agent.experiments.report (issue 23's other half).
    "test": {
        "name": "welch_t",
        "statistic": 2.17,
        "p_value": 0.031,
        "alpha": 0.05,
        "favours": "treatment",
        "metric": "rate",
        "control": "control",
        "difference": 0.06,
        "difference_ci": [0.01, 0.11],
        "comparisons": [{"variant": "treatment", "run": True, "p_value": 0.031}],
    },
    "warnings": ["<b>few users</b> in treatment"],
}
INTERLEAVED = {
    **REPORT,
    "experiment": "il",
    "kind": "interleave",
    "test": {
        "name": "sign_test_users",
        "statistic": 0.5,
        "p_value": 1.0,
        "alpha": 0.05,
        "favours": None,
        "users_preferring": {"control": 4, "treatment": 4},
        "users_tied": 2,
    },
    "warnings": [],
}

# Replaces fetch() for /v1/experiments* before the page's scripts run: the endpoint is built
# elsewhere (issue 23); the page's rendering of its documented answer is what is tested.
FAKE_EXPERIMENTS = """
const realFetch = window.fetch.bind(window);
const answers = {'/v1/experiments': ["prompt-ab", "il"],
  '/v1/experiments/prompt-ab': REPORT, '/v1/experiments/il': INTERLEAVED};
window.fetch = (url, opts) => {
  const body = answers[String(url)];
  if (body === undefined) return realFetch(url, opts);
  return Promise.resolve(new Response(JSON.stringify(body),
    {status: 200, headers: {'Content-Type': 'application/json'}}));
};
"""


def test_experiments_tab_draws_the_report_or_says_none_is_configured(
    driver: Any, base: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(driver, base + "/")
    driver.find_element(By.ID, "tab-experiments").click()
    _wait(driver, lambda d: d.find_element(By.ID, "exp-status").text)
    # This server configures no experiment: a 404 or an empty list both say so.
    assert driver.find_element(By.ID, "exp-status").text.startswith("No experiments configured")
    _console_errors(driver)  # a 404 from /v1/experiments is logged by the browser
    script = FAKE_EXPERIMENTS.replace("INTERLEAVED", json.dumps(INTERLEAVED)).replace(
        "REPORT", json.dumps(REPORT)
    )
    added = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
    try:
        _open(driver, base + "/")
        driver.find_element(By.ID, "tab-experiments").click()
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#exp-chart svg.ci"))
        assert driver.find_element(By.ID, "exp-title").text == "prompt-ab (ab)"
        charts = driver.find_elements(By.CSS_SELECTOR, "#exp-chart svg.ci")
        assert len(charts) == 2
        # One bar and three whisker lines (the interval and its two caps) per variant.
        for chart in charts:
            assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar")) == 2
            assert len(chart.find_elements(By.CSS_SELECTOR, "line.whisker")) == 6
        table = driver.find_element(By.ID, "exp-table").text
        assert "treatment" in table and "0.270 [0.220, 0.320]" in table, table
        warning = driver.find_element(By.CSS_SELECTOR, "#exp-warnings li")
        assert warning.text == "<b>few users</b> in treatment"
        test = driver.find_element(By.ID, "exp-test").text
        assert "favours treatment (p = 0.0310 < 0.05)" in test, test
        assert "0.0100, 0.1100" in test, test  # the difference's CI
        captions = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#exp-chart figcaption")]
        assert captions[0].startswith("Positives per impression"), captions
        driver.save_screenshot(str(SHOTS / "experiments.png"))
        # The interleaving report: credited clicks, the users' preferences, no verdict.
        Select(driver.find_element(By.ID, "exp-name")).select_by_value("il")
        driver.find_element(By.CSS_SELECTOR, "#exp-form button").click()
        _wait(driver, lambda d: d.find_element(By.ID, "exp-title").text == "il (interleave)")
        caption = driver.find_element(By.CSS_SELECTOR, "#exp-chart figcaption").text
        assert caption.startswith("Credited clicks per impression"), caption
        test = driver.find_element(By.ID, "exp-test").text
        assert "no difference found (p = 1.0000" in test, test
        assert "control 4, treatment 4" in test, test
        assert driver.find_elements(By.CSS_SELECTOR, "#exp-warnings li") == []
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", added)
    assert _console_errors(driver) == []


def test_keyboard_only_recommendation_and_labelled_controls(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(driver, base + "/")
    # Focus starts in the user box; typing and Enter submit the form.
    _wait(driver, lambda d: _js(d, "return document.activeElement.id") == "rec-user")
    driver.switch_to.active_element.send_keys("c3", Keys.ENTER)
    _wait(
        driver,
        lambda d: _js(d, "return document.getElementById('rec-list').dataset.state") == "done",
    )
    # Tab reaches the picks' buttons, which are real buttons with names.
    for _ in range(12):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if _js(driver, "return document.activeElement.closest('#rec-list') !== null"):
            break
    focused = driver.switch_to.active_element
    assert focused.tag_name == "button" and focused.get_attribute("aria-label"), focused.text
    # Every input and select has a label; every button has a name.
    unlabelled = _js(
        driver,
        """return [...document.querySelectorAll('input, select')]
             .filter(e => !document.querySelector(`label[for="${e.id}"]`)).map(e => e.id)""",
    )
    assert unlabelled == []
    nameless = _js(
        driver,
        """return [...document.querySelectorAll('button')]
             .filter(b => !(b.textContent.trim() || b.getAttribute('aria-label'))).length""",
    )
    assert nameless == 0
    # The tabs are buttons too: Enter on one switches the view, the arrow keys move along.
    driver.find_element(By.ID, "tab-chat").send_keys(Keys.ENTER)
    assert driver.find_element(By.ID, "view-chat").is_displayed()
    driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    assert driver.switch_to.active_element.get_attribute("id") == "tab-status"
    assert driver.find_element(By.ID, "view-status").is_displayed()
    assert not driver.find_element(By.ID, "view-chat").is_displayed()
    assert _console_errors(driver) == []


def test_readable_at_phone_width(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    driver.set_window_size(390, 844)
    try:
        _open(driver, base + "/")
        _recommend(driver, user="c0")
        width = _js(driver, "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width  # nothing wider than the screen
        body = _js(
            driver,
            "return getComputedStyle(document.querySelector('.pick-body')).gridTemplateColumns",
        )
        assert len(body.split()) == 1, body  # rationale above its evidence, not beside it
        driver.save_screenshot(str(SHOTS / "phone.png"))
        for tab, ready in (("chat", "#chat-sessions"), ("status", "#metrics svg")):
            driver.find_element(By.ID, f"tab-{tab}").click()
            _wait(driver, lambda d, css=ready: d.find_elements(By.CSS_SELECTOR, css))
            width = _js(driver, "return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (tab, width)
    finally:
        driver.set_window_size(1200, 800)
    assert _console_errors(driver) == []


@pytest.fixture(scope="module")
def keyed_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _server(tmp_path_factory.mktemp("web-key"), service=f'api_key = "{KEY}"') as url:
        yield url


def test_the_page_asks_for_the_key_once_and_sends_it(driver: Any, keyed_base: str) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, keyed_base + "/")
    _wait(driver, lambda d: d.find_element(By.ID, "key-panel").is_displayed())
    assert not driver.find_element(By.ID, "view-recommend").is_displayed()
    assert _console_errors(driver) == []  # the page and its files needed no key
    # A wrong key is refused, and the form asks again.
    driver.find_element(By.ID, "key-input").send_keys("not-the-key-at-all")
    driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
    _wait(driver, lambda d: "refused" in d.find_element(By.ID, "key-error").text)
    assert _js(driver, "return sessionStorage.getItem('genre.apiKey')") is None
    _console_errors(driver)  # the 401 is logged by the browser
    driver.find_element(By.ID, "key-input").send_keys(KEY)
    driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
    _wait(driver, lambda d: d.find_element(By.ID, "view-recommend").is_displayed())
    assert not driver.find_element(By.ID, "key-panel").is_displayed()
    _recommend(driver, user="c0")
    assert len(_pick_ids(driver)) == K
    # A reload in the same tab keeps the key: no second prompt.
    _open(driver, keyed_base + "/")
    _wait(driver, lambda d: d.find_element(By.ID, "view-recommend").is_displayed())
    assert not driver.find_element(By.ID, "key-panel").is_displayed()
    driver.find_element(By.ID, "tab-status").click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#metrics svg"))  # /metrics, keyed
    driver.find_element(By.ID, "forget-key").click()
    assert driver.find_element(By.ID, "key-panel").is_displayed()
    assert _js(driver, "return sessionStorage.getItem('genre.apiKey')") is None
    assert _console_errors(driver) == []


EXPERIMENT = """
[[service.experiments]]
name = "pop-vs-default"
kind = "ab"
min_users = 50

[[service.experiments.variants]]
name = "default"
share = 0.5

[[service.experiments.variants]]
name = "popularity"
share = 0.5
overlay = { retrieval = { sources = { embedding = 0.0, itemknn = 0.0, bm25 = 0.0, popularity = 1.0 } } }
"""


def test_the_experiments_tab_charts_a_served_experiment(
    driver: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """End to end: a server with an A/B experiment, answers and likes sent over HTTP, then
    the tab draws what GET /v1/experiments/NAME reports (no faked endpoint)."""
    import httpx
    from selenium.webdriver.common.by import By

    with _server(tmp_path_factory.mktemp("web-exp"), EXPERIMENT) as url:
        users = [f"c{u}" for u in range(6)]
        with httpx.Client(base_url=url, timeout=120) as http:
            for user in users:
                got = http.get(f"/v1/recommend/{user}", params={"k": K}).json()
                assert got["trace"]["experiment"] == "pop-vs-default"
                first = got["items"][0]["item"]["id"]
                event = {"event_id": f"like-{user}", "user_id": user, "item_id": first,
                         "type": "like", "request_id": got["request_id"]}  # fmt: skip
                assert http.post("/v1/feedback", json={"events": [event]}).status_code == 200
            report = http.get("/v1/experiments/pop-vs-default").json()
        served = {v["name"]: v for v in report["variants"]}
        assert sum(v["users"] for v in served.values()) == len(users)
        _open(driver, url + "/")
        driver.find_element(By.ID, "tab-experiments").click()
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#exp-chart svg.ci"))
        assert driver.find_element(By.ID, "exp-title").text == "pop-vs-default (ab)"
        for chart in driver.find_elements(By.CSS_SELECTOR, "#exp-chart svg.ci"):
            assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar")) == len(served)
        table = driver.find_element(By.ID, "exp-table").text
        for name, v in served.items():
            assert name in table and f"{v['rate']:.3f}" in table, table
        # 6 users are far below min_users: the page shows the report's warning.
        warnings = [w.text for w in driver.find_elements(By.CSS_SELECTOR, "#exp-warnings li")]
        assert warnings == report["warnings"] and warnings, warnings
        driver.save_screenshot(str(SHOTS / "experiments-served.png"))
        assert _console_errors(driver) == []
