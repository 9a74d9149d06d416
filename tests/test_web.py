"""The web page (genre_agent/http/web.py) without a browser: `/` and its files load without
the API key, with the right content types and security headers, while the API still needs
the key; and the page's JavaScript never hands API data to the HTML parser.

tests/test_web_browser.py drives the same page in headless Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_http import KEY, make_service

from genre_agent.http import create_app
from genre_agent.http.web import STATIC

FILES = {
    "/": "text/html",
    "/static/app.js": "text/javascript",
    "/static/charts.js": "text/javascript",
    "/static/style.css": "text/css",
    "/static/icon.svg": "image/svg+xml",
}


@pytest.fixture()
def keyed(tmp_path: Path) -> TestClient:
    svc = make_service(tmp_path, service={"api_key": KEY})
    with TestClient(create_app(service=svc)) as client:
        yield client


def test_page_and_files_load_without_the_key_and_the_api_still_needs_it(
    keyed: TestClient,
) -> None:
    for path, kind in FILES.items():
        resp = keyed.get(path)
        assert resp.status_code == 200, (path, resp.text[:200])
        assert resp.headers["content-type"].split(";")[0] == kind, (path, resp.headers)
        assert resp.headers["x-content-type-options"] == "nosniff"
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
    page = keyed.get("/").text
    assert '<script src="static/app.js"' in page and "http" not in re.sub(r"<!--.*?-->", "", page)
    assert keyed.get("/page.json").json() == {
        "api_key_required": True,
        "api_key_header": "X-API-Key",
    }
    assert keyed.get("/v1/sessions").status_code == 401
    assert keyed.get("/v1/sessions", headers={"X-API-Key": KEY}).status_code == 200
    # A file outside the static folder is not reachable through it.
    assert keyed.get("/static/../web.py").status_code == 404
    assert keyed.get("/static/missing.js").status_code == 404


def test_without_a_key_the_page_says_so(tmp_path: Path) -> None:
    with TestClient(create_app(service=make_service(tmp_path))) as client:
        assert client.get("/page.json").json()["api_key_required"] is False
        assert client.get("/").status_code == 200


def test_the_host_check_still_applies_to_the_page(keyed: TestClient) -> None:
    assert keyed.get("/", headers={"host": "evil.example"}).status_code == 400


def _scripts() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in STATIC.glob("*.js")}


def test_the_scripts_never_parse_api_data_as_html() -> None:
    """No innerHTML / outerHTML / insertAdjacentHTML / document.write / eval anywhere:
    text goes in with textContent and text nodes only."""
    scripts = _scripts()
    assert set(scripts) == {"app.js", "charts.js"}
    sinks = re.compile(
        r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\("
        r"|createContextualFragment|DOMParser"
    )
    for name, text in scripts.items():
        assert not sinks.search(text), (name, sinks.search(text))
    # The check itself finds a sink (it is not vacuous).
    assert sinks.search("card.innerHTML = item.title;")
    assert sinks.search("node.insertAdjacentHTML('beforeend', x)")


def test_the_page_loads_nothing_from_another_origin() -> None:
    """No CDN: every src/href in the page and every fetch in the scripts is same-origin."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert not re.match(r"^(https?:)?//", ref), ref
    for name, text in _scripts().items():
        for url in re.findall(r"fetch\(\s*[\"'`]([^\"'`]+)", text):
            assert url.startswith("/"), (name, url)


def test_fake_delay_reaches_the_fake_engine() -> None:
    """llm.fake_delay_s (what the browser tests use to pull a stream's events apart) is
    handed to the engine, and is part of its identity (a cached engine without it is not
    reused)."""
    from genre_agent.config import load_config
    from genre_agent.llm import get_engine

    slow = get_engine(load_config({"llm": {"engine": "fake", "fake_delay_s": 0.5}}).llm)
    fast = get_engine(load_config({"llm": {"engine": "fake"}}).llm)
    assert getattr(slow, "delay_s", None) == 0.5
    assert getattr(fast, "delay_s", None) == 0.0
