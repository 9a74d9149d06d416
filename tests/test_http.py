"""The HTTP service (genre_agent.http) over the fixture catalog, the hashing embedder and
scripted LLMs: every endpoint, the guards, streaming, the LLM budget and its flags.

The same paths against a real `genre serve` with the real default model are in
tests/test_http_real.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_pipeline import ALL_SOURCES, ROWS

from genre_agent.config import load_config
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.errors import ConfigError
from genre_agent.http import create_app
from genre_agent.http.guards import check_bind
from genre_agent.http.service import Service
from genre_agent.llm import FakeLLM
from genre_agent.llm.base import Generation, GenRequest
from genre_agent.llm.faults import LLMUnavailable
from genre_agent.service.chat import scripted_intents

CATALOG = Path(__file__).parent / "fixtures" / "catalog.jsonl"
KEY = "s3cret-key-of-16-chars"
R = 3  # rationale_top_r


def make_service(tmp_path: Path, llm: Any = None, **sections: dict[str, Any]) -> Service:
    tree: dict[str, Any] = {
        "store": {
            "kind": "embedded",
            "path": str(tmp_path / "chroma"),
            "interactions_path": str(tmp_path / "i.sqlite"),
        },
        "profile": {"path": str(tmp_path / "p.sqlite")},
        "chat": {"sessions_path": str(tmp_path / "chat.sqlite")},
        "llm": {"engine": "fake"},
        "retrieval": {"sources": ALL_SOURCES},
        "ranking": {"rationale_top_r": R},
        # No Redis call at each scrape unless a test asks for it; TestClient's host name.
        "service": {"queue_metrics": False, "allowed_hosts": ["testserver"]},
    }
    for name, values in sections.items():
        tree[name] = {**tree.get(name, {}), **values}
    cfg = load_config(tree, use_env=False)
    svc = Service.from_config(cfg, llm=llm or FakeLLM(scripted_intents()), embedder=FakeEmbedder())
    svc.rec.index(CATALOG)
    svc.rec.add_interactions(ROWS)
    svc.rec.fit()
    return svc


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(service=make_service(tmp_path))) as c:
        yield c


def _ids(body: dict[str, Any]) -> list[str]:
    return [it["item"]["id"] for it in body["items"]]


# -- health, docs, recommend -----------------------------------------------------------------


def test_health_docs_and_a_recommendation_with_rationales(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["items"] == 50
    assert client.get("/docs").status_code == 200
    assert "/v1/recommend/{user_id}" in client.get("/openapi.json").json()["paths"]

    got = client.get("/v1/recommend/c0", params={"k": 4, "explain": "true"})
    assert got.status_code == 200, got.text
    body = got.json()
    history = {r.item_id for r in ROWS if r.user_id == "c0"}
    assert len(body["items"]) == 4 and not history & set(_ids(body))
    assert [bool(it["rationale"]) for it in body["items"]] == [True] * R + [False]
    assert all(it["evidence"] for it in body["items"])
    assert body["trace"]["fallback"] is None and body["trace"]["missing_rationales"] == []
    assert body["trace"]["llm_calls"] == R


def test_explain_false_is_the_same_list_without_the_llm(client: TestClient) -> None:
    full = client.get("/v1/recommend/c0", params={"k": 5, "explain": "true"}).json()
    fast = client.get("/v1/recommend/c0", params={"k": 5, "explain": "false"}).json()
    assert _ids(fast) == _ids(full)
    assert all(it["rationale"] is None for it in fast["items"])
    assert fast["trace"]["llm_calls"] == 0 and fast["trace"]["prompt_tokens"] == 0
    # The same evidence as the explained answer: it is computed before any LLM runs.
    assert [it["evidence"] for it in fast["items"]] == [it["evidence"] for it in full["items"]]


def test_post_recommend_with_history_rows_query_and_filters(client: TestClient) -> None:
    body = {
        "history": ["m4", {"item_id": "m5", "rating": 5.0}, {"item_id": "m1", "rating": 1.0}],
        "query": "parody",
        "filters": {"genre_comedy": True},
        "k": 3,
    }
    got = client.post("/v1/recommend", json=body)
    assert got.status_code == 200, got.text
    out = got.json()
    assert len(out["items"]) == 3 and not {"m1", "m4", "m5"} & set(_ids(out))
    assert all(it["item"]["metadata"]["genre_comedy"] for it in out["items"])
    # m1 was rated 1.0: excluded, but not cited as liked evidence.
    cited = {s["id"] for it in out["items"] for s in it["evidence"]["history"]}
    assert cited <= {"m4", "m5"}


def test_unknown_user_gets_the_cold_start_answer_not_a_404(client: TestClient) -> None:
    got = client.get("/v1/recommend/nobody", params={"k": 2})
    assert got.status_code == 200, got.text
    out = got.json()
    assert out["trace"]["strategy"] == "popular" and out["trace"]["ranked_by"] == "popularity"
    assert any(n.startswith("cold start:") for n in out["trace"]["notes"])
    posted = client.post("/v1/recommend", json={"user_id": "nobody", "k": 2})
    assert posted.status_code == 200 and _ids(posted.json()) == _ids(out)
    # With a query the same unknown user is served from it.
    ok = client.get("/v1/recommend/nobody", params={"query": "space parody", "k": 2})
    assert ok.status_code == 200 and len(ok.json()["items"]) == 2
    assert ok.json()["trace"]["strategy"] == "stated"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("get", "/v1/recommend/c0", {"params": {"k": 0}}, "k"),
        ("get", "/v1/recommend/c0", {"params": {"k": 101}}, "k"),
        ("get", "/v1/recommend/c0", {"params": {"k": "many"}}, "k"),
        ("get", "/v1/recommend/c0", {"params": {"colour": "red"}}, "colour"),
        ("get", "/v1/recommend/c0", {"params": {"where": "{not json"}}, "where"),
        ("get", "/v1/recommend/c0", {"params": {"where": '{"year": {"$near": 1}}'}}, "where"),
        ("post", "/v1/recommend", {"json": {"history": ["m4"], "k": 101}}, "k"),
        ("post", "/v1/recommend", {"json": {"history": ["m4"], "colour": "red"}}, "colour"),
        ("post", "/v1/recommend", {"json": {"history": [{"item": "m4"}]}}, "item"),
        ("post", "/v1/recommend", {"json": {"history": ["m4"], "filters": {"$x": 1}}}, "filters"),
        ("post", "/v1/recommend", {"content": b'{"history": ["m4"', "headers": {}}, "body"),
        ("post", "/v1/rank", {"json": {"candidates": [], "query": "x"}}, "candidates"),
        ("post", "/v1/rank", {"json": {"candidates": ["m1", "zz"], "query": "x"}}, "zz"),
        ("get", "/v1/items/m4/similar", {"params": {"k": -1}}, "k"),
        ("post", "/v1/sessions", {"json": {"user": "x"}}, "user"),
    ],
)
def test_bad_input_is_4xx_naming_the_field(client, method, path, kwargs, field) -> None:
    kwargs = dict(kwargs)
    if "content" in kwargs:
        kwargs["headers"] = {"content-type": "application/json"}
    got = getattr(client, method)(path, **kwargs)
    assert 400 <= got.status_code < 500, got.text
    assert field in got.text, got.text


def test_oversize_bodies_are_413_declared_or_chunked(tmp_path: Path) -> None:
    svc = make_service(tmp_path, service={"max_body_bytes": 2048})
    with TestClient(create_app(service=svc)) as c:
        big = {"history": ["m4"], "query": "x" * 3000}
        got = c.post("/v1/recommend", json=big)
        assert got.status_code == 413 and "max_body_bytes" in got.json()["detail"]

        def chunks() -> Iterator[bytes]:
            yield b'{"history": ["m4"], "query": "'
            for _ in range(10):
                yield b"y" * 300
            yield b'"}'

        got = c.post(
            "/v1/recommend", content=chunks(), headers={"content-type": "application/json"}
        )
        assert got.status_code == 413
        small = c.post("/v1/recommend", json={"history": ["m4"], "k": 2})
        assert small.status_code == 200


# -- rank, similar, items --------------------------------------------------------------------


def test_rank_orders_the_candidates_given(client: TestClient) -> None:
    cands = ["m30", "m6", "m7", "m1", "m8"]
    body = {"candidates": cands, "history": ["m4", "m5"], "k": 5, "explain": True}
    got = client.post("/v1/rank", json=body)
    assert got.status_code == 200, got.text
    out = got.json()
    assert sorted(_ids(out)) == sorted(cands)
    scores = [it["score"] for it in out["items"]]
    assert scores == sorted(scores, reverse=True)
    assert sum(bool(it["rationale"]) for it in out["items"]) == R
    by_user = client.post("/v1/rank", json={"candidates": cands, "user_id": "c0", "k": 2})
    assert by_user.status_code == 200 and len(by_user.json()["items"]) == 2


def test_similar_uses_the_item_as_history(client: TestClient) -> None:
    got = client.get("/v1/items/m4/similar", params={"k": 3, "explain": "false"})
    assert got.status_code == 200, got.text
    out = got.json()
    assert len(out["items"]) == 3 and "m4" not in _ids(out)
    assert all(s["id"] == "m4" for it in out["items"] for s in it["evidence"]["history"])
    assert client.get("/v1/items/nope/similar").status_code == 404


def test_put_items_validates_like_a_catalog_and_writes_nothing_on_a_bad_row(client) -> None:
    before = client.get("/v1/items/m4/similar", params={"k": 5, "explain": "false"}).json()
    rows = [
        {"id": "n1", "title": "New Parody (2020)", "text": "Genres: Comedy. Tags: parody, space."},
        {"id": "n2", "title": "   ", "text": ""},
        {"id": "n3", "title": "Ok", "metadata": {"score": float("inf")}},
        "not an object",
        {"id": "m4", "title": "Dup"},
        {"id": "m4", "title": "Dup again"},
    ]
    # JSON has no Infinity: 1e999 is how a client sends one (Python reads it as inf).
    text = json.dumps({"items": rows}).replace("Infinity", "1e999")
    bad = client.put("/v1/items", content=text, headers={"content-type": "application/json"})
    assert bad.status_code == 422, bad.text
    problems = {(p["row"], p["field"]) for p in bad.json()["problems"]}
    assert {(2, "title"), (3, "metadata.score"), (4, "<row>"), (6, "id")} <= problems
    assert "body.items:2: field 'title'" in bad.json()["detail"]
    assert client.get("/health/ready").json()["items"] == 50  # nothing was written
    after = client.get("/v1/items/m4/similar", params={"k": 5, "explain": "false"}).json()
    assert _ids(after) == _ids(before)

    good = client.put("/v1/items", json={"items": [rows[0]]})
    assert good.json() == {"added": 1, "updated": 0, "unchanged": 0, "total": 1}
    assert client.get("/health/ready").json()["items"] == 51
    found = client.post("/v1/recommend", json={"query": "new parody", "k": 50, "explain": False})
    assert "n1" in _ids(found.json())  # the sources see it at once

    assert client.delete("/v1/items/n1").json() == {"deleted": "n1"}
    assert client.delete("/v1/items/n1").status_code == 404
    gone = client.post("/v1/recommend", json={"query": "new parody", "k": 50, "explain": False})
    assert "n1" not in _ids(gone.json())


# -- chat -------------------------------------------------------------------------------------


def test_a_chat_session_over_http(client: TestClient) -> None:
    sid = client.post("/v1/sessions", json={}).json()["id"]
    turn = client.post(f"/v1/sessions/{sid}/messages", json={"message": "space parody"})
    assert turn.status_code == 200, turn.text
    picks = turn.json()["picks"]
    assert picks and all(p["id"] for p in picks) and turn.json()["error"] is None
    state = client.get(f"/v1/sessions/{sid}").json()
    assert state["query"] == "space parody" and len(state["turns"]) == 1
    assert client.get("/v1/sessions/nope").status_code == 404
    assert client.post("/v1/sessions/nope/messages", json={"message": "x"}).status_code == 404
    empty = client.post(f"/v1/sessions/{sid}/messages", json={"message": ""})
    assert empty.status_code == 422 and "message" in empty.text


# -- streaming ------------------------------------------------------------------------------


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_streaming_sends_the_list_then_each_rationale_then_done(client: TestClient) -> None:
    with client.stream(
        "GET", "/v1/recommend/c0", params={"k": 4}, headers={"accept": "text/event-stream"}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = _events(resp.read().decode())
    kinds = [k for k, _ in events]
    assert kinds == ["ranked"] + ["rationale"] * R + ["done"]
    ranked, done = events[0][1], events[-1][1]
    assert all(it["rationale"] is None for it in ranked["items"])
    assert _ids(ranked) == _ids(done)
    assert {e["item"]["id"] for k, e in events if k == "rationale"} == set(_ids(done)[:R])
    # A bad request is an error status, not a stream.
    bad = client.get("/v1/recommend/c0", params={"k": 0}, headers={"accept": "text/event-stream"})
    assert bad.status_code == 422


# -- the LLM budget and LLM failures --------------------------------------------------------


class SlowAfterFirst:
    """Answers the first rationale at once and every later one after ``delay`` seconds."""

    thread_safe = True

    def __init__(self, delay: float) -> None:
        self.inner = FakeLLM("first")
        self.model_id, self.revision = "slow", "0"
        self.delay = delay
        self.calls = 0
        self.lock = threading.Lock()

    def generate(self, requests: list[GenRequest]) -> list[Generation]:
        with self.lock:
            self.calls += 1
            n = self.calls
        if n > 1:
            time.sleep(self.delay)
        return self.inner.generate(requests)

    def close(self) -> None:
        return None


class Down:
    thread_safe = True
    model_id, revision = "down", "0"

    def generate(self, requests: list[GenRequest]) -> list[Generation]:
        raise LLMUnavailable("engine 'openai' at http://127.0.0.1:9/v1: cannot connect")

    def score_labels(self, requests: list[Any]) -> list[Any]:
        return self.generate([])

    def close(self) -> None:
        return None


def test_past_the_budget_the_list_comes_with_the_rationales_that_finished(tmp_path) -> None:
    svc = make_service(tmp_path, llm=SlowAfterFirst(3.0), service={"llm_budget_s": 1.0})
    with TestClient(create_app(service=svc)) as c:
        t0 = time.monotonic()
        out = c.get("/v1/recommend/c0", params={"k": 4, "explain": "true"}).json()
        assert time.monotonic() - t0 < 2.9  # answered at the budget, not after the LLM
    tr = out["trace"]
    explained = [it["item"]["id"] for it in out["items"] if it["rationale"]]
    assert tr["fallback"] == "llm_timeout" and len(explained) == 1
    assert sorted(tr["missing_rationales"] + explained) == sorted(_ids(out)[:R])
    assert any("llm_budget_s" in n for n in tr["notes"])


@pytest.mark.parametrize("mode", ["retrieval", "scoring"])
def test_an_llm_that_is_down_gives_a_flagged_list_never_a_500(tmp_path, mode) -> None:
    svc = make_service(tmp_path, llm=Down(), ranking={"mode": mode})
    with TestClient(create_app(service=svc)) as c:
        got = c.get("/v1/recommend/c0", params={"k": 4, "explain": "true"})
        assert got.status_code == 200, got.text
        out = got.json()
        assert len(out["items"]) == 4 and all(it["rationale"] is None for it in out["items"])
        assert out["trace"]["fallback"] == "llm_unavailable"
        assert out["trace"]["missing_rationales"] == _ids(out)[:R]
        assert any("cannot connect" in n for n in out["trace"]["notes"])
        ranked = c.post(
            "/v1/rank", json={"candidates": ["m6", "m7", "m8"], "history": ["m4"], "explain": True}
        )
        assert ranked.status_code == 200
        assert ranked.json()["trace"]["fallback"] == "llm_unavailable"
        with c.stream(
            "GET", "/v1/recommend/c0", params={"k": 4}, headers={"accept": "text/event-stream"}
        ) as resp:
            events = _events(resp.read().decode())
        assert [k for k, _ in events] == ["ranked", "done"]
        assert events[-1][1]["trace"]["fallback"] == "llm_unavailable"
        metrics = c.get("/metrics").text
        assert 'genre_fallbacks_total{reason="llm_unavailable"} 3.0' in metrics
        # A chat turn answers like recommend: flagged, the message read as the query, picks
        # ranked without the LLM, the cause in its notes (not a 503, not a 500).
        sid = c.post("/v1/sessions", json={}).json()["id"]
        turn = c.post(f"/v1/sessions/{sid}/messages", json={"message": "space"})
        assert turn.status_code == 200, turn.text
        body = turn.json()
        assert body["fallback"] == "llm_unavailable" and body["intent"]["query"] == "space"
        assert body["picks"] and any("cannot connect" in n for n in body["notes"])


# -- auth, binding, metrics, concurrency ----------------------------------------------------


def test_with_a_key_every_endpoint_but_health_needs_it(tmp_path: Path) -> None:
    svc = make_service(tmp_path, service={"api_key": KEY})
    with TestClient(create_app(service=svc)) as c:
        assert c.get("/health/live").status_code == 200
        assert c.get("/health/ready").status_code == 200
        for headers in ({}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}):
            for path in ("/v1/recommend/c0", "/metrics", "/v1/sessions/x"):
                got = c.get(path, headers=headers)
                assert got.status_code == 401, (path, headers, got.text)
        assert c.get("/v1/recommend/c0", headers={"x-api-key": KEY}).status_code == 200
        ok = c.get("/v1/recommend/c0", headers={"authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
        assert c.put("/v1/items", json={"items": []}).status_code == 401


def test_a_public_address_needs_a_key() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "key")
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(ConfigError, match="api_key"):
            check_bind(host, None)


def test_genre_serve_refuses_a_public_address_without_a_key(capsys) -> None:
    from genre_agent.cli.main import run

    code = run(["serve", "--host", "0.0.0.0", "--set", "llm.engine=fake"])
    assert code == 2
    assert "service.api_key" in capsys.readouterr().err


def test_metrics_count_latency_tokens_and_fallbacks(client: TestClient) -> None:
    client.get("/v1/recommend/c0", params={"k": 3, "explain": "true"})
    client.get("/v1/recommend/c0", params={"k": 3})
    text = client.get("/metrics").text
    assert 'genre_http_request_seconds_count{endpoint="/v1/recommend/{user_id}",' in text
    assert 'method="GET",status="200"} 2.0' in text
    prompt = next(
        ln for ln in text.splitlines() if ln.startswith('genre_llm_tokens_total{kind="prompt"}')
    )
    assert float(prompt.split()[-1]) > 0
    assert "genre_ready 1.0" in text


def test_concurrent_requests_share_one_recommender(client: TestClient) -> None:
    paths = ["/v1/recommend/c0", "/v1/recommend/c1", "/v1/recommend/c2", "/v1/recommend/big"] * 2

    def get(path: str) -> tuple[int, list[str]]:
        got = client.get(path, params={"k": 3, "explain": "true"})
        return got.status_code, _ids(got.json())

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(get, paths))
    assert all(code == 200 for code, _ in results)
    assert results[:4] == results[4:]  # the same answers as one at a time


# -- feedback, forgetting a user, the queue's lag -------------------------------------------


def test_feedback_is_stored_once_and_a_forgotten_user_is_unknown_again(client) -> None:
    events = [
        {"event_id": "e1", "user_id": "u9", "item_id": "m4", "type": "like"},
        {"event_id": "e2", "user_id": "u9", "item_id": "m5", "type": "rating", "value": 5},
        {"event_id": "e3", "user_id": "u9", "item_id": "m1", "type": "dislike"},
    ]
    cold = client.get("/v1/recommend/u9").json()["trace"]
    assert cold["strategy"] == "popular"
    got = client.post("/v1/feedback", json={"events": events})
    assert got.json() == {"stored": 3, "duplicates": []}, got.text
    again = client.post("/v1/feedback", json={"events": events[:2]})
    assert again.json() == {"stored": 0, "duplicates": ["e1", "e2"]}
    out = client.get("/v1/recommend/u9", params={"k": 3, "explain": "false"}).json()
    assert not {"m1", "m4", "m5"} & set(_ids(out))
    cited = {s["id"] for it in out["items"] for s in it["evidence"]["history"]}
    assert cited and cited <= {"m4", "m5"}  # the dislike is excluded, never liked

    bad = {"event_id": "e4", "user_id": "u9", "item_id": "m6", "type": "love"}
    good = {"event_id": "e5", "user_id": "u9", "item_id": "m7", "type": "view"}
    got = client.post("/v1/feedback", json={"events": [good, bad]})
    assert got.status_code == 422 and "events.1.type" in got.json()["message"]
    # The batch was refused whole: its good event was not stored either.
    assert client.post("/v1/feedback", json={"events": [good]}).json()["stored"] == 1
    no_value = {**bad, "type": "rating"}
    got = client.post("/v1/feedback", json={"events": [no_value]})
    assert got.status_code == 422 and "value" in got.json()["message"]

    sid = client.post("/v1/sessions", json={"user_id": "u9"}).json()["id"]
    report = client.delete("/v1/users/u9").json()
    assert report["events"] == 4 and report["chat_sessions"] == 1 and report["total"] >= 4
    # Forgotten: a new user again, answered by the cold-start rule.
    assert client.get("/v1/recommend/u9").json()["trace"]["strategy"] == "popular"
    assert client.get(f"/v1/sessions/{sid}").status_code == 404
    # Other users are untouched; a redelivered event of the forgotten user stays out.
    assert client.get("/v1/recommend/c0", params={"explain": "false"}).status_code == 200
    assert client.post("/v1/feedback", json={"events": events[:1]}).json()["stored"] == 0


def test_queue_metrics_say_when_redis_does_not_answer(tmp_path: Path) -> None:
    from servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    svc = make_service(tmp_path, service={"queue_metrics": True}, queue={"redis_url": url})
    with TestClient(create_app(service=svc)) as c:
        text = c.get("/metrics").text
    assert "genre_queue_up 0.0" in text and "genre_queue_lag" not in text


@pytest.mark.server
def test_queue_metrics_report_the_lag_of_a_real_redis(tmp_path: Path) -> None:
    import redis
    from servers import redis_server

    with redis_server(tmp_path / "redis") as port:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        client.xgroup_create("genre:feedback", "genre", id="0", mkstream=True)
        for n in range(3):
            client.xadd("genre:feedback", {"event_id": f"e{n}"})
        svc = make_service(tmp_path, service={"queue_metrics": True}, queue={"redis_url": url})
        with TestClient(create_app(service=svc)) as c:
            text = c.get("/metrics").text
        client.close()
    assert "genre_queue_up 1.0" in text
    assert 'genre_queue_lag{group="genre",stream="genre:feedback"} 3.0' in text
    assert 'genre_queue_pending{group="genre",stream="genre:feedback"} 0.0' in text


def test_the_retrieval_order_explains_its_items_as_if_every_candidate_had_evidence(tmp_path):
    """Evidence is computed for the returned items only; it is the evidence they would
    have had if every candidate had been given some (each item's is its own)."""
    from genre_agent.service.requests import RecRequest

    rec = make_service(tmp_path).rec
    query = "parody space"
    out = rec.recommend(history=["m4", "m5", "m1"], query=query, k=5)
    assert all(c.evidence is None for c in out.trace.candidates)
    req = RecRequest(history=["m4", "m5", "m1"], query=query)
    every = {c.item.id: c.evidence for c in rec.with_evidence(out.trace.candidates, req)}
    assert [it.evidence for it in out.items] == [every[it.item.id] for it in out.items]
    assert all(it.evidence and it.evidence.history for it in out.items)
