"""Online experiments served over HTTP (fake engine, fixture catalog): trace.experiment and
trace.variant on every answer, the exposure log, feedback joined to it, interleaved
answers, and GET /v1/experiments[/NAME]."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from test_http import KEY, make_service

from genre_agent.experiments.assign import assign
from genre_agent.experiments.config import ExperimentConfig
from genre_agent.http import create_app

USERS = [f"c{u}" for u in range(6)] + ["h0", "h1", "big"]
POP_ONLY = {"sources": {"embedding": 0, "itemknn": 0, "bm25": 0, "popularity": 1.0}}


def ab(**kw: Any) -> dict[str, Any]:
    return {
        "name": "exp1",
        "variants": [
            {"name": "control", "share": 0.5},
            {"name": "pop", "share": 0.5, "overlay": {"retrieval": POP_ONLY}},
        ],
        "min_users": 3,
        **kw,
    }


def client(tmp_path: Path, *experiments: dict[str, Any], **service: Any) -> TestClient:
    svc = make_service(tmp_path, service={"experiments": list(experiments), **service})
    return TestClient(create_app(service=svc))


def click(c: TestClient, user: str, item: str, n: int, request_id: str | None = None) -> None:
    event = {"event_id": f"e{user}{n}", "user_id": user, "item_id": item, "type": "click"}
    if request_id:
        event["request_id"] = request_id
    got = c.post("/v1/feedback", json={"events": [event]})
    assert got.status_code == 200, got.text


def test_every_answer_names_its_experiment_and_variant_and_is_logged(tmp_path: Path):
    exp = ExperimentConfig.model_validate(ab())
    with client(tmp_path, ab()) as c:
        seen = {}
        for n, user in enumerate(USERS):
            got = c.get(f"/v1/recommend/{user}", params={"k": 3}).json()
            trace = got["trace"]
            assert trace["experiment"] == "exp1"
            assert trace["variant"] == assign(exp, user).name
            seen[user] = (trace["variant"], [it["item"]["id"] for it in got["items"]])
            if trace["variant"] == "pop":
                assert trace["sources"] == {"popularity": 1.0}
            # Every user clicks their first item, naming the answer, and c0 another one
            # without naming it (joined by user, item and time).
            click(c, user, seen[user][1][0], n, got["request_id"])
        click(c, "c0", seen["c0"][1][1], 99)
        # No user: no experiment applies.
        anon = c.post("/v1/recommend", json={"query": "funny", "k": 2}).json()
        assert anon["trace"]["experiment"] is None and anon["trace"]["variant"] is None
        report = c.get("/v1/experiments/exp1").json()
    variants = {v["name"]: v for v in report["variants"]}
    for name in ("control", "pop"):
        mine = [u for u, (v, _) in seen.items() if v == name]
        assert variants[name]["users"] == len(mine) == variants[name]["exposures"]
    c0 = seen["c0"][0]
    others = [u for u, (v, _) in seen.items() if v == c0 and u != "c0"]
    # Rate: per user mean positives per impression, then the mean over users.
    assert variants[c0]["rate"] == (2 + len(others)) / (1 + len(others))
    assert variants[c0]["mrr"] == 1.0  # every user's first item was clicked
    assert report["test"]["name"] == "welch_t"
    assert report["kind"] == "ab"


def test_a_report_warns_below_min_users_and_an_unknown_experiment_is_404(tmp_path: Path):
    with client(tmp_path, ab(min_users=50)) as c:
        c.get("/v1/recommend/c0")
        report = c.get("/v1/experiments/exp1").json()
        assert any("fewer than min_users = 50" in w for w in report["warnings"])
        assert c.get("/v1/experiments/nope").status_code == 404
        listed = c.get("/v1/experiments").json()["experiments"]
        assert listed == [
            {"name": "exp1", "kind": "ab", "enabled": True, "variants": ["control", "pop"]}
        ]


def test_interleaved_answers_merge_both_variants_and_credit_clicks(tmp_path: Path):
    with client(tmp_path, ab(kind="interleave")) as c:
        for n, user in enumerate(USERS):
            got = c.get(f"/v1/recommend/{user}", params={"k": 4}).json()
            trace = got["trace"]
            assert (trace["experiment"], trace["variant"]) == ("exp1", "interleaved")
            assert len(trace["teams"]) == len(got["items"]) and set(trace["teams"]) <= {
                "control",
                "pop",
            }
            assert [it["rank"] for it in got["items"]] == list(range(1, len(got["items"]) + 1))
            # Each user clicks the item the "pop" team picked first, if any.
            picks = [
                it["item"]["id"]
                for it, t in zip(got["items"], trace["teams"], strict=True)
                if t == "pop"
            ]
            if picks:
                click(c, user, picks[0], n)
        report = c.get("/v1/experiments/exp1").json()
    assert report["kind"] == "interleave" and report["test"]["name"] == "sign_test_users"
    prefer = report["test"]["users_preferring"]
    assert prefer["control"] == 0 and prefer["pop"] > 0
    assert [v["exposures"] for v in report["variants"]] == [len(USERS)] * 2


def test_a_click_outside_the_window_does_not_count(tmp_path: Path):
    with client(tmp_path, ab(window_s=60)) as c:
        got = c.get("/v1/recommend/c0").json()
        item = got["items"][0]["item"]["id"]
        late = time.time() + 3600
        event = {"event_id": "late", "user_id": "c0", "item_id": item, "type": "like"}
        c.post("/v1/feedback", json={"events": [{**event, "timestamp": late}]})
        report = c.get("/v1/experiments/exp1").json()
    assert sum(v["rate"] for v in report["variants"]) == 0.0


def test_experiment_endpoints_need_the_key(tmp_path: Path):
    with client(tmp_path, ab(), api_key=KEY) as c:
        assert c.get("/v1/experiments").status_code == 401
        assert c.get("/v1/experiments/exp1").status_code == 401
        assert c.get("/v1/experiments/exp1", headers={"x-api-key": KEY}).status_code == 200


def test_no_experiment_leaves_the_trace_fields_empty(tmp_path: Path):
    with client(tmp_path) as c:
        trace = c.get("/v1/recommend/c0").json()["trace"]
        assert trace["experiment"] is None and trace["variant"] is None
        assert c.get("/v1/experiments").json() == {"experiments": []}


def test_the_cli_prints_the_same_report_as_the_endpoint(tmp_path: Path):
    import json

    import tomli_w
    from typer.testing import CliRunner

    from genre_agent.cli.main import app

    with client(tmp_path, ab()) as c:
        for n, user in enumerate(USERS):
            got = c.get(f"/v1/recommend/{user}").json()
            if n % 2:
                click(c, user, got["items"][0]["item"]["id"], n)
        served = c.get("/v1/experiments/exp1").json()
        cfg = c.app.state.service.config  # type: ignore[attr-defined]
    path = tmp_path / "genre.toml"
    path.write_text(tomli_w.dumps(cfg.model_dump(mode="json", exclude_none=True)))
    runner = CliRunner()
    res = runner.invoke(app, ["experiments", "report", "exp1", "--json", "-c", str(path)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == served
    res = runner.invoke(app, ["experiments", "report", "exp1", "-c", str(path)])
    assert res.exit_code == 0 and "welch_t" in res.output and "control" in res.output
    res = runner.invoke(app, ["experiments", "report", "nope", "-c", str(path)])
    # A GenreError: `genre` (cli.main.run) prints its one line and exits 1.
    assert res.exit_code != 0 and "no experiment 'nope'" in str(res.exception)


def test_a_streamed_explained_answer_is_served_by_the_variant_and_logged_once(tmp_path: Path):
    from test_http import R, _events

    exp = ExperimentConfig.model_validate(ab())
    with client(tmp_path, ab()) as c:
        with c.stream(
            "GET", "/v1/recommend/c0", params={"k": 4}, headers={"accept": "text/event-stream"}
        ) as resp:
            events = _events(resp.read().decode())
        assert [k for k, _ in events] == ["ranked"] + ["rationale"] * R + ["done"]
        for kind, data in (events[0], events[-1]):
            assert data["trace"]["experiment"] == "exp1", kind
            assert data["trace"]["variant"] == assign(exp, "c0").name, kind
        report = c.get("/v1/experiments/exp1").json()
    mine = {v["name"]: v for v in report["variants"]}[assign(exp, "c0").name]
    assert mine["exposures"] == 1
    # The fake engine reports tokens for its rationale calls, and the stream times them:
    # the exposure carries both.
    assert mine["llm_tokens"] > 0 and mine["llm_seconds"] > 0
    assert (
        mine["llm_tokens"]
        == events[-1][1]["trace"]["prompt_tokens"] + events[-1][1]["trace"]["completion_tokens"]
    )
