"""The HTTP API's shape (issue 21): the fast default, request ids and trace weights, the read,
list and batch endpoints with cursors, offline docs and a described openapi.json, one type
per concept at the edge, notes in the trace, and the edges (Unicode, session ids, the Host
header, forget-user on disk, the API key's length). TestClient, the fixture catalog, fakes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_http import KEY, ROWS, _events, _ids, make_service

from genre_agent.config import load_config
from genre_agent.errors import ConfigError
from genre_agent.http import create_app
from genre_agent.http.openapi import undescribed
from genre_agent.http.service import Service
from genre_agent.storage.interactions import Interaction, InteractionStore


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(service=make_service(tmp_path))) as c:
        yield c


def _all_pages(client: TestClient, path: str, limit: int, **params: Any) -> list[Any]:
    """Every entry of a list endpoint, following next_cursor; checks each page's shape."""
    out: list[Any] = []
    cursor = None
    for _ in range(1000):
        got = client.get(path, params={**params, "limit": limit, "cursor": cursor})
        assert got.status_code == 200, got.text
        page = got.json()
        assert len(page["items"]) <= limit and page["request_id"]
        out.extend(page["items"])
        cursor = page["next_cursor"]
        assert page["items"] or cursor is None  # no empty page before the end
        if cursor is None:
            return out
    raise AssertionError("the cursor never ended")


# -- 1. fast by default -----------------------------------------------------------------------


def test_the_default_answer_is_the_fast_one_and_explain_or_a_stream_asks_for_words(
    client: TestClient,
) -> None:
    fast = client.get("/v1/recommend/c0", params={"k": 4}).json()
    assert fast["trace"]["llm_calls"] == 0 and all(not it["rationale"] for it in fast["items"])
    posted = client.post("/v1/recommend", json={"user_id": "c0", "k": 4}).json()
    assert posted["trace"]["llm_calls"] == 0 and _ids(posted) == _ids(fast)

    full = client.get("/v1/recommend/c0", params={"k": 4, "explain": "true"}).json()
    assert full["trace"]["llm_calls"] > 0 and full["items"][0]["rationale"]
    assert _ids(full) == _ids(fast)
    with client.stream(
        "GET", "/v1/recommend/c0", params={"k": 4}, headers={"accept": "text/event-stream"}
    ) as resp:
        events = _events(resp.read().decode())
    assert "rationale" in [k for k, _ in events]
    with client.stream(
        "GET",
        "/v1/recommend/c0",
        params={"k": 4, "explain": "false"},
        headers={"accept": "text/event-stream"},
    ) as resp:
        assert [k for k, _ in _events(resp.read().decode())] == ["ranked", "done"]


# -- 2. request ids, trace weights, attribution ----------------------------------------------


def test_every_answer_has_a_request_id_that_feedback_can_name(client: TestClient) -> None:
    one = client.get("/v1/recommend/c0", params={"k": 3})
    two = client.get("/v1/recommend/c0", params={"k": 3})
    rid = one.json()["request_id"]
    assert rid and rid == one.headers["x-request-id"] and rid != two.json()["request_id"]
    for path in ("/health/live", "/v1/items/m1", "/v1/items/nope", "/openapi.json"):
        assert client.get(path).headers.get("x-request-id"), path

    clicked = one.json()["items"][0]["item"]["id"]
    event = {"event_id": "k1", "user_id": "c0", "item_id": clicked, "type": "click"}
    got = client.post("/v1/feedback", json={"events": [{**event, "request_id": rid}]})
    assert got.json() == {"stored": 1, "duplicates": []}
    stored = _all_pages(client, "/v1/users/c0/feedback", 10)
    assert [(e["event_id"], e["item_id"], e["request_id"]) for e in stored] == [
        ("k1", clicked, rid)
    ]


def test_trace_chooses_the_weight_and_summary_has_no_candidate_list(client: TestClient) -> None:
    sizes = {}
    for level in ("none", "summary", "full"):
        got = client.get("/v1/recommend/c0", params={"k": 4, "trace": level})
        assert got.status_code == 200, got.text
        sizes[level] = len(got.content)
        body = got.json()
        assert len(body["items"]) == 4
        if level == "none":
            assert "trace" not in body
        elif level == "summary":
            assert "candidates" not in body["trace"] and "raw_outputs" not in body["trace"]
            assert body["trace"]["strategy"] == "personal"
        else:
            assert len(body["trace"]["candidates"]) >= 4
    assert sizes["none"] < sizes["summary"] < sizes["full"]
    # The default is summary.
    default = client.post("/v1/recommend", json={"history": ["m4"], "k": 4}).json()
    assert "candidates" not in default["trace"] and "notes" in default["trace"]
    assert client.get("/v1/recommend/c0", params={"trace": "all"}).status_code == 422


# -- 2. read, list and batch endpoints -------------------------------------------------------


def test_items_one_and_listed_with_a_cursor(client: TestClient) -> None:
    one = client.get("/v1/items/m4")
    assert one.status_code == 200 and one.json()["id"] == "m4" and one.json()["title"]
    assert client.get("/v1/items/nope").status_code == 404
    items = _all_pages(client, "/v1/items", 7)
    ids = [it["id"] for it in items]
    assert len(ids) == 50 and ids == sorted(ids) and len(set(ids)) == 50
    first = client.get("/v1/items", params={"limit": 50}).json()
    assert first["next_cursor"] is None  # exactly one page
    bad = client.get("/v1/items", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and "cursor" in bad.text
    other = client.get("/v1/popular", params={"limit": 1}).json()["next_cursor"]
    wrong = client.get("/v1/items", params={"cursor": other})
    assert wrong.status_code == 422 and "cursor" in wrong.text
    assert client.get("/v1/items", params={"offset": 3}).status_code == 422


def test_a_users_interactions_and_feedback_paged(client: TestClient) -> None:
    stored = [r.item_id for r in ROWS if r.user_id == "big"]
    assert client.get("/v1/users/big").json()["interactions"] == len(stored)
    rows = _all_pages(client, "/v1/users/big/interactions", 3)
    assert len(stored) == 8 and len(_all_pages(client, "/v1/users/big/interactions", 4)) == 8
    assert [r["item_id"] for r in rows] == stored and {r["origin"] for r in rows} == {"file"}
    events = [
        {"event_id": f"f{n}", "user_id": "big", "item_id": "m1", "type": "view"} for n in range(5)
    ]
    client.post("/v1/feedback", json={"events": events})
    assert [e["event_id"] for e in _all_pages(client, "/v1/users/big/feedback", 2)] == [
        f"f{n}" for n in range(5)
    ]
    assert len(_all_pages(client, "/v1/users/big/interactions", 4)) == len(stored) + 5
    summary = client.get("/v1/users/big").json()
    assert summary["interactions"] == len(stored) + 5 and summary["feedback_events"] == 5
    for path in ("/v1/users/nobody", "/v1/users/nobody/interactions", "/v1/users/nobody/feedback"):
        assert client.get(path).status_code == 404, path


def test_sessions_listed_and_deleted(client: TestClient) -> None:
    ids = [client.post("/v1/sessions", json={"user_id": u}).json()["id"] for u in ("a", "b", "a")]
    listed = _all_pages(client, "/v1/sessions", 2)
    assert sorted(s["id"] for s in listed) == sorted(ids)
    mine = _all_pages(client, "/v1/sessions", 5, user_id="a")
    assert sorted(s["id"] for s in mine) == sorted([ids[0], ids[2]])
    assert client.delete(f"/v1/sessions/{ids[0]}").json() == {"deleted": ids[0]}
    assert client.get(f"/v1/sessions/{ids[0]}").status_code == 404
    assert client.delete(f"/v1/sessions/{ids[0]}").status_code == 404
    assert len(_all_pages(client, "/v1/sessions", 10)) == 2


def test_popular_follows_live_counts_and_latest_the_newest_items(client: TestClient) -> None:
    popular = _all_pages(client, "/v1/popular", 4)
    counts = [p["count"] for p in popular]
    assert counts == sorted(counts, reverse=True) and counts[0] > 1
    top = popular[0]["item"]["id"]
    # m40 has no interactions: ten views put it first.
    assert "m40" not in {p["item"]["id"] for p in popular}
    events = [
        {"event_id": f"p{n}", "user_id": f"v{n}", "item_id": "m40", "type": "view"}
        for n in range(counts[0] + 1)
    ]
    client.post("/v1/feedback", json={"events": events})
    now = client.get("/v1/popular", params={"limit": 2}).json()["items"]
    assert [p["item"]["id"] for p in now] == ["m40", top]

    client.put("/v1/items", json={"items": [{"id": "new1", "title": "Newest (2026)"}]})
    latest = client.get("/v1/latest", params={"limit": 3}).json()
    assert latest["items"][0]["item"]["id"] == "new1"
    assert latest["items"][0]["added"] >= latest["items"][1]["added"]
    assert len(_all_pages(client, "/v1/latest", 20)) == 51


def test_batch_answers_each_request_in_order_with_its_own_status(client: TestClient) -> None:
    body = {
        "requests": [
            {"user_id": "c0", "k": 2},
            {"history": ["no-such-item"]},
            {"history": ["m1"], "k": 3, "trace": "none"},
            {"history": ["m4"], "k": 2, "explain": True},
        ]
    }
    got = client.post("/v1/recommend/batch", json=body)
    assert got.status_code == 200, got.text
    out = got.json()
    assert [r["status"] for r in out["results"]] == [200, 422, 200, 200]
    single = client.post("/v1/recommend", json={"user_id": "c0", "k": 2}).json()
    assert _ids(out["results"][0]["result"]) == _ids(single)
    assert "no-such-item" in out["results"][1]["error"]["detail"]
    assert "trace" not in out["results"][2]["result"]
    assert out["results"][3]["result"]["items"][0]["rationale"]
    rids = [r["request_id"] for r in out["results"]]
    assert len(set(rids)) == 4 and all(r.startswith(out["request_id"]) for r in rids)
    too_many = client.post("/v1/recommend/batch", json={"requests": [{"history": ["m1"]}] * 101})
    assert too_many.status_code == 422


# -- 3. offline docs and a described openapi.json --------------------------------------------


def test_docs_are_served_offline(client: TestClient) -> None:
    html = client.get("/docs").text
    refs = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    assert refs and all(r.startswith("/") for r in refs), refs
    assert not re.search(r"https?://", html), html
    for ref in refs:
        if ref != "/openapi.json":
            assert client.get(ref).status_code == 200, ref
    assert "SwaggerUIBundle" in client.get("/docs/static/swagger-ui-bundle.js").text


def test_openapi_describes_every_field_and_declares_every_error(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert undescribed(schema) == []
    checked = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            codes = set(op["responses"])
            assert "400" in codes, where  # the Host check
            for param in op.get("parameters", []):
                assert param.get("description"), (where, param["name"])
            if path.startswith("/v1"):
                checked += 1
                assert "401" in codes, where
                assert "422" in codes, where
                if "requestBody" in op:
                    assert "413" in codes, where
                if re.search(r"\{(item_id|session_id)\}", path) or (
                    re.search(r"\{user_id\}", path) and method == "get"
                ):
                    assert "404" in codes, where
                for code in codes - {"200", "201"}:
                    assert op["responses"][code]["description"], (where, code)
                ok = op["responses"].get("200") or op["responses"]["201"]
                assert "$ref" in json.dumps(ok["content"]), where  # a described model
    assert checked >= 20


# -- 4. one type per concept -----------------------------------------------------------------


def test_numeric_ids_are_strings_at_the_edge(client: TestClient) -> None:
    rows = [{"id": 1, "title": "One (1990)"}, {"id": 260, "title": "Star Wars (1977)"}]
    assert client.put("/v1/items", json={"items": rows}).json()["added"] == 2
    assert client.get("/v1/items/260").json()["id"] == "260"
    got = client.post("/v1/recommend", json={"history": [1, 260], "k": 5})
    assert got.status_code == 200, got.text
    assert not {"1", "260"} & set(_ids(got.json()))
    events = [{"event_id": 7, "user_id": 1, "item_id": 260, "type": "like"}]
    assert client.post("/v1/feedback", json={"events": events}).json()["stored"] == 1
    mine = client.post("/v1/recommend", json={"user_id": 1, "k": 3})
    assert mine.status_code == 200 and mine.json()["user_id"] == "1"
    ranked = client.post("/v1/rank", json={"candidates": [1, "m4"], "history": [260]})
    assert ranked.status_code == 200 and set(_ids(ranked.json())) == {"1", "m4"}


def test_timestamps_are_rfc3339_or_epoch_seconds(client: TestClient) -> None:
    events = [
        {"event_id": "t1", "user_id": "ts", "item_id": "m4", "type": "view"}
        | {"timestamp": "2026-12-07T03:00:00Z"},
        {"event_id": "t2", "user_id": "ts", "item_id": "m5", "type": "view"}
        | {"timestamp": "2026-12-07T04:00:00+01:00"},
        {"event_id": "t3", "user_id": "ts", "item_id": "m6", "type": "view"}
        | {"timestamp": 1796612400},
    ]
    got = client.post("/v1/feedback", json={"events": events})
    assert got.status_code == 200, got.text
    stored = [e["timestamp"] for e in _all_pages(client, "/v1/users/ts/feedback", 5)]
    assert stored == [1796612400.0] * 3
    row = {"item_id": "m4", "timestamp": "2026-12-07T03:00:00Z", "rating": 5}
    assert client.post("/v1/recommend", json={"history": [row], "k": 2}).status_code == 200
    naive = client.post(
        "/v1/recommend", json={"history": [{**row, "timestamp": "2026-12-07T03:00:00"}]}
    )
    assert naive.status_code == 422 and "timestamp" in naive.text and "zone" in naive.text
    bad = client.post("/v1/recommend", json={"history": [{**row, "timestamp": "yesterday"}]})
    assert bad.status_code == 422 and "RFC 3339" in bad.text


def test_the_item_upsert_error_speaks_of_the_request_not_a_file(client: TestClient) -> None:
    bad = client.put("/v1/items", json={"items": [{"id": "x1", "title": " "}]})
    assert bad.status_code == 422
    assert "nothing from this request was indexed" in bad.json()["detail"]
    assert "file" not in bad.json()["detail"]


def test_rank_with_only_candidates_falls_back_to_popularity(client: TestClient) -> None:
    got = client.post("/v1/rank", json={"candidates": ["m30", "m4", "m5", "m1"], "k": 4})
    assert got.status_code == 200, got.text
    out = got.json()
    assert out["trace"]["strategy"] == "popular" and out["trace"]["ranked_by"] == "popularity"
    assert sorted(_ids(out)) == ["m1", "m30", "m4", "m5"]


def test_rank_never_returns_history_items(client: TestClient) -> None:
    cands = ["m4", "m30", "m6", "m1"]
    got = client.post("/v1/rank", json={"candidates": cands, "history": ["m4", "m1"], "k": 4})
    out = got.json()
    assert sorted(_ids(out)) == ["m30", "m6"]
    assert any("in the history, left out: m4, m1" in n for n in out["trace"]["notes"])
    by_user = client.post("/v1/rank", json={"candidates": ["m4", "m30"], "user_id": "c0"}).json()
    history = {r.item_id for r in ROWS if r.user_id == "c0"}
    assert not history & set(_ids(by_user))
    only = client.post("/v1/rank", json={"candidates": ["m4"], "history": ["m4"]})
    assert only.status_code == 422 and "history" in only.text


# -- 5. notes travel -------------------------------------------------------------------------


def test_a_stale_fitted_model_is_noted_in_every_answer(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    cfg = svc.config
    svc.close()
    store = InteractionStore(cfg.store.interactions_path)
    store.add([Interaction("late", "m4", 99.0, 5.0)])  # after the fit
    store.close()
    fresh = Service.from_config(cfg, llm=svc.rec.llm, embedder=svc.rec.store.embedder)
    with TestClient(create_app(service=fresh)) as c:
        for got in (
            c.get("/v1/recommend/c0", params={"k": 2}),
            c.post("/v1/recommend", json={"history": ["m4"], "k": 2, "explain": True}),
            c.post("/v1/rank", json={"candidates": ["m5", "m6"], "history": ["m4"]}),
        ):
            notes = got.json()["trace"]["notes"]
            assert any("genre fit" in n and "itemknn" in n for n in notes), notes
        # New items rebuild the sources, which say it again with the new count: one note.
        event = {"event_id": "n1", "user_id": "late", "item_id": "m5", "type": "view"}
        c.post("/v1/feedback", json={"events": [event]})
        c.put("/v1/items", json={"items": [{"id": "n9", "title": "New (2026)"}]})
        notes = c.get("/v1/recommend/c0", params={"k": 2}).json()["trace"]["notes"]
        stale = [n for n in notes if "itemknn was fitted on" in n]
        assert len(stale) == 1 and f"now holds {len(ROWS) + 2}" in stale[0], notes


# -- 10. edges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/v1/recommend", '{"query": "\\udfff", "history": ["m4"]}', "query"),
        ("post", "/v1/recommend", '{"history": ["m\\udfff"]}', "history"),
        ("post", "/v1/recommend", '{"history": ["m4"], "filters": {"g": "\\udfff"}}', "filters"),
        ("post", "/v1/rank", '{"candidates": ["m4"], "query": "\\ud800x"}', "query"),
        (
            "post",
            "/v1/feedback",
            '{"events": [{"event_id": "s1", "user_id": "\\udfff", "item_id": "m4", "type": "view"}]}',
            "user_id",
        ),
        ("post", "/v1/sessions", '{"user_id": "\\udfff"}', "user_id"),
        ("put", "/v1/items", '{"items": [{"id": "s1", "title": "\\udfff"}]}', "title"),
        ("post", "/v1/recommend/batch", '{"requests": [{"query": "\\udfff"}]}', "query"),
    ],
)
def test_a_lone_surrogate_anywhere_is_a_4xx_naming_the_field(
    client, method, path, body, field
) -> None:
    got = getattr(client, method)(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= got.status_code < 500, got.text
    answer = json.loads(got.content)  # valid JSON: the input is shown escaped
    said = answer.get("message") or answer["detail"]
    assert field in said and "unicode" in said.lower(), said


def test_surrogates_and_odd_bytes_in_the_url_are_never_a_500(client: TestClient) -> None:
    for path in (
        "/v1/recommend/c0?query=%ED%BF%BF",
        "/v1/recommend/%ED%BF%BF",
        "/v1/items/%ED%BF%BF",
        "/v1/users/%ED%BF%BF/feedback",
        "/v1/sessions/%ED%BF%BF",
        "/v1/recommend/c0?where=%7B%22genres%22%3A%22%ED%BF%BF%22%7D",
    ):
        got = client.get(path)
        assert got.status_code < 500, (path, got.text)
    for where in ('{"genres": "\\udfff"}', '{"\\udfff": 1}'):
        got = client.get("/v1/recommend/c0", params={"where": where})
        assert got.status_code == 422 and "where" in got.json()["detail"], got.text


def test_unknown_or_long_session_ids_make_no_lock(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    with TestClient(create_app(service=svc)) as c:
        for n in range(50):
            got = c.post(f"/v1/sessions/nope{n}/messages", json={"message": "hi"})
            assert got.status_code == 404
        long = c.post(f"/v1/sessions/{'x' * 15000}/messages", json={"message": "hi"})
        assert long.status_code == 422 and "session_id" in long.text
        assert svc.session_locks() == 0
        sid = c.post("/v1/sessions", json={}).json()["id"]
        assert c.post(f"/v1/sessions/{sid}/messages", json={"message": "space"}).status_code == 200
        assert svc.session_locks() == 1
        c.delete(f"/v1/sessions/{sid}")
        assert svc.session_locks() == 0


def test_the_host_header_must_be_an_allowed_host(tmp_path: Path) -> None:
    svc = make_service(tmp_path, service={"allowed_hosts": ["127.0.0.1", "localhost", "[::1]"]})
    with TestClient(create_app(service=svc), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/v1/items/m1").status_code == 200
        for host in ("localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.1"):
            assert c.get("/health/live", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
            got = c.get("/v1/items/m1", headers={"host": host})
            assert got.status_code == 400, host
            assert "service.allowed_hosts" in got.json()["detail"]
    assert load_config(use_env=False).service.allowed_hosts == ("127.0.0.1", "localhost", "[::1]")
    star = make_service(tmp_path / "star", service={"allowed_hosts": ["*"]})
    with TestClient(create_app(service=star)) as c:
        assert c.get("/health/live", headers={"host": "anything.example"}).status_code == 200


def test_forgetting_a_user_removes_their_rows_from_the_files(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    marker = "forget-me-7a1c"
    with TestClient(create_app(service=svc)) as c:
        events = [
            {"event_id": f"z{n}", "user_id": marker, "item_id": f"m{n + 1}", "type": "view"}
            for n in range(20)
        ]
        assert c.post("/v1/feedback", json={"events": events}).json()["stored"] == 20
        for _ in range(3):
            assert c.post("/v1/sessions", json={"user_id": marker}).status_code == 201
        files = [p for p in tmp_path.iterdir() if p.name.startswith(("i.sqlite", "chat.sqlite"))]

        def on_disk() -> bool:
            return any(marker.encode() in p.read_bytes() for p in files if p.exists())

        assert on_disk()  # the check can see the rows
        got = c.delete(f"/v1/users/{marker}")
        assert got.json()["events"] == 20 and got.json()["chat_sessions"] == 3
        assert not on_disk()


def test_a_short_api_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="api_key"):
        load_config({"service": {"api_key": "x"}}, use_env=False)
    with pytest.raises(ConfigError, match="api_key"):
        load_config({"service": {"api_key": "fifteen-chars!!"}}, use_env=False)
    assert load_config({"service": {"api_key": KEY}}, use_env=False).service.api_key == KEY


def test_a_nan_score_is_sent_as_null_not_a_500() -> None:
    from genre_agent.catalog.items import Item
    from genre_agent.http.views import render
    from genre_agent.types import RankedItem, Recommendation, Trace

    item = RankedItem(rank=1, item=Item(id="m1", title="A"), score=float("nan"))
    rec = Recommendation(user_id="u", items=[item], trace=Trace(candidates=[], stability=1e999))
    for level in ("none", "summary", "full"):
        out = render(rec, level, "rid", ["note: x"])  # type: ignore[arg-type]
        json.dumps(out, allow_nan=False)  # what JSONResponse does
        assert out["items"][0]["score"] is None and out["request_id"] == "rid"
    assert render(rec, "summary", "rid", ["note: x"])["trace"]["notes"] == ["note: x"]
