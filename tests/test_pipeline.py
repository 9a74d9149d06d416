"""One pipeline: configured sources, `genre fit`, `Recommender.rank`, filters, profiles.

Fast tests on the fixture catalog with the hashing embedder and the scripted LLM. The same
paths on the real default model and a real Chroma (embedded and `chroma run`) are in
tests/test_pipeline_real.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_agent import Recommender
from genre_agent.config import DEFAULT_SOURCES
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.errors import GenreError
from genre_agent.llm import FakeLLM
from genre_agent.service.fit import FitError
from genre_agent.storage.interactions import Interaction

ALL_SOURCES = {"embedding": 1.0, "itemknn": 1.0, "bm25": 0.5, "popularity": 0.5}

# Users who watch comedies together (m4..m12 are the fixture's comedies), and two horror fans.
ROWS = [
    Interaction(f"c{u}", f"m{i}", float(t), 4.5)
    for u in range(6)
    for t, i in enumerate((4, 5, 6, 7, 8, 9, 10, 11, 12)[(u % 3) * 2 : (u % 3) * 2 + 5])
] + [Interaction(f"h{u}", i, float(t), 5.0) for u in range(2) for t, i in enumerate(("m1", "m2"))]
# A user past cold start (more than 5 interactions).
ROWS += [Interaction("big", f"m{i}", float(i), 4.0) for i in range(13, 21)]


def make(tmp_path: Path, catalog_path: Path, **cfg: object) -> Recommender:
    config = {
        "store": {
            "kind": "embedded",
            "path": str(tmp_path / "chroma"),
            "interactions_path": str(tmp_path / "i.sqlite"),
        },
        "profile": {"path": str(tmp_path / "p.sqlite")},
        "llm": {"engine": "fake"},
        **cfg,
    }
    rec = Recommender.from_config(config, llm=FakeLLM("first"), embedder=FakeEmbedder())
    rec.index(catalog_path)
    return rec


def test_unfitted_sources_are_skipped_with_a_note_the_content_sources_answer(
    tmp_path, catalog_path
) -> None:
    """Default config, a catalog without interactions: the fitted sources are skipped
    (a note each), the content sources answer."""
    rec = make(tmp_path, catalog_path)
    out = rec.recommend(history=["m4"], k=3)
    assert len(out.items) == 3 and "m4" not in {i.item.id for i in out.items}
    assert out.trace.sources == {"bm25": 0.99, "embedding": 0.79, "popularity": 0.09}
    skipped = [n for n in out.trace.notes if "skipped: it has no fitted model" in n]
    assert [n.split()[1] for n in skipped] == ["sequential", "itemknn", "als"]
    # The same request on the content sources alone is the same list.
    content = make(
        tmp_path / "c",
        catalog_path,
        retrieval={"sources": {"bm25": 0.99, "embedding": 0.79, "popularity": 0.09}},
    )
    again = content.recommend(history=["m4"], k=3)
    assert [i.item.id for i in again.items] == [i.item.id for i in out.items]
    assert not again.trace.notes


def test_the_cli_shows_the_skipped_sources(tmp_path, catalog_path) -> None:
    from genre_agent.cli.main import app

    sets = [
        "--set",
        "llm.engine=fake",
        "--set",
        "embedder.kind=fake",
        "--set",
        f"store.path={tmp_path / 'chroma'}",
        "--set",
        f"store.interactions_path={tmp_path / 'i.sqlite'}",
        "--set",
        f"profile.path={tmp_path / 'p.sqlite'}",
    ]
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(catalog_path), *sets]).exit_code == 0
    res = runner.invoke(app, ["recommend", "--history", "m4", "-k", "2", "--json", *sets])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["items"]) == 2
    for kind in ("sequential", "itemknn", "als"):
        assert f"note: source {kind} skipped: it has no fitted model" in res.stderr


def test_strict_retrieval_keeps_the_missing_fit_error(tmp_path, catalog_path) -> None:
    rec = make(tmp_path, catalog_path, retrieval={"strict": True})
    with pytest.raises(FitError, match="no interactions are stored"):
        rec.recommend(history=["m4"], k=3)
    rec.add_interactions(ROWS)
    with pytest.raises(FitError, match="run `genre fit`"):
        rec.recommend(history=["m4"], k=3)
    report = rec.fit()[0]
    prov = json.loads((report.path / "provenance.json").read_text())
    assert prov["data_sha256"] == rec.interactions.fingerprint()
    assert prov["interactions"] == len(ROWS) and prov["config"]["itemknn_neighbours"] == 100
    out = rec.recommend(history=["m4", "m5"], k=3)
    assert len(out.items) == 3 and not {"m4", "m5"} & {i.item.id for i in out.items}
    assert out.trace.sources == DEFAULT_SOURCES


def test_fit_replaces_the_model_whole_and_the_fit_survives_a_reopen(tmp_path, catalog_path):
    rec = make(tmp_path, catalog_path)
    rec.add_interactions(ROWS)
    first = rec.fit()[0].provenance
    rec.add_interactions([Interaction("x", "m13", 1.0, 5.0), Interaction("x", "m14", 2.0, 5.0)])
    second = rec.fit()[0].provenance
    assert second["data_sha256"] != first["data_sha256"]
    assert second["interactions"] == len(ROWS) + 2
    rec.close()
    again = make(tmp_path, catalog_path)  # a new process would load the saved model
    assert again.recommend(history=["m13"], k=2, filters=None).items[0].item.id == "m14"
    assert not list(Path(tmp_path / "models").glob("*.tmp"))


def test_new_interactions_count_for_popularity_at_once(tmp_path, catalog_path) -> None:
    rec = make(
        tmp_path,
        catalog_path,
        ranking={"mode": "retrieval", "rationale_top_r": 0},
        retrieval={"sources": {"popularity": 1.0}},
    )
    rec.add_interactions(ROWS)
    top = rec.recommend(history=["m1"], k=1).items[0].item.id
    assert top != "m30"
    rec.add_interactions([Interaction(f"n{u}", "m30", 1.0) for u in range(20)])
    assert rec.recommend(history=["m1"], k=1).items[0].item.id == "m30"


def test_rank_orders_given_candidates_as_recommend_does(tmp_path, catalog_path) -> None:
    """One source: ``rank`` reproduces ``recommend``'s order on its candidates. Fused
    sources: RRF over each source's ranks within the given list (docs/architecture.md)."""
    for sources in ({"itemknn": 1.0}, {"bm25": 1.0}, {"embedding": 1.0}, ALL_SOURCES):
        rec = make(
            tmp_path,
            catalog_path,
            ranking={"mode": "retrieval", "rationale_top_r": 0},
            retrieval={"sources": sources},
        )
        rec.add_interactions(ROWS)
        rec.fit()
        served = rec.recommend(history=["m4", "m5"], k=8)
        ids = [i.item.id for i in served.items]
        ranked = rec.rank(list(reversed(ids)), history=["m4", "m5"], k=8)
        got = [i.item.id for i in ranked.items]
        scores = [i.score or 0.0 for i in ranked.items]
        assert scores == sorted(scores, reverse=True)
        if len(sources) == 1:
            assert got == ids, sources
        assert ranked.trace.sources == sources
    with pytest.raises(GenreError, match="not in the index"):
        rec.rank(["m1", "nope"], history=["m4"])
    with pytest.raises(GenreError, match="k must be"):
        rec.rank(["m1"], history=["m4"], k=0)


def test_where_filter_holds_for_every_source(tmp_path, catalog_path) -> None:
    rec = make(tmp_path, catalog_path, ranking={"mode": "retrieval", "rationale_top_r": 0})
    rec.add_interactions(ROWS)
    rec.fit()
    where = {"genre_horror": True}
    for sources in [{k: 1.0} for k in ALL_SOURCES] + [ALL_SOURCES]:
        r = make(
            tmp_path,
            catalog_path,
            ranking={"mode": "retrieval", "rationale_top_r": 0},
            retrieval={"sources": sources},
        )
        out = r.recommend(history=["m4", "m5", "m11"], k=10, filters=where)
        assert out.items, sources
        assert all(i.item.metadata.get("genre_horror") is True for i in out.items), sources
        assert all(c.item.metadata.get("genre_horror") is True for c in out.trace.candidates)


def test_the_ranked_list_does_not_depend_on_rationales(tmp_path, catalog_path) -> None:
    """The harness measures ranking with rationales off; this is why that is the same list."""
    lists = []
    for top_r in (0, 3):
        rec = make(
            tmp_path,
            catalog_path,
            ranking={"mode": "retrieval", "rationale_top_r": top_r},
            retrieval={"sources": {"embedding": 1.0, "bm25": 1.0}},
        )
        out = rec.recommend(history=["m4", "m5"], k=5)
        lists.append([(i.item.id, i.score) for i in out.items])
        assert sum(i.rationale is not None for i in out.items) == top_r
    assert lists[0] == lists[1]


# -- profiles on the main path: one test per entry point --------------------------------------

PROFILE_ON = {"profile": {"use_in_rerank": True, "use_in_retrieval": True}}


def _with_profiles(tmp_path: Path) -> dict[str, object]:
    return {"profile": {**PROFILE_ON["profile"], "path": str(tmp_path / "p.sqlite")}}


def test_profile_switches_reach_recommend_by_user_id(tmp_path, catalog_path) -> None:
    rec = make(
        tmp_path,
        catalog_path,
        retrieval={"sources": {"embedding": 1.0}},
        **_with_profiles(tmp_path),
    )
    rec.add_interactions(ROWS)
    out = rec.recommend(user_id="c0", k=3)
    assert out.trace.profile and out.trace.profile_used == ["retrieval", "rerank"]
    prompt = rec.llm.requests[-1].messages[-1].content  # type: ignore[attr-defined]
    assert out.trace.profile.split(".")[0][:20] in prompt
    off = make(tmp_path, catalog_path, retrieval={"sources": {"embedding": 1.0}})
    assert off.recommend(user_id="c0", k=3).trace.profile_used == []


def _cli_sets(tmp_path: Path, *extra: str) -> list[str]:
    sets = [
        "llm.engine=fake",
        "embedder.kind=fake",
        f"store.path={tmp_path / 'chroma'}",
        f"store.interactions_path={tmp_path / 'i.sqlite'}",
        f"profile.path={tmp_path / 'p.sqlite'}",
        *extra,
    ]
    return [x for s in sets for x in ("--set", s)]


def test_profile_switches_reach_cli_recommend_user(tmp_path, catalog_path) -> None:
    from genre_agent.cli.main import app

    inter = tmp_path / "inter.csv"
    inter.write_text(
        "user_id,item_id,timestamp,rating\n"
        + "".join(f"{r.user_id},{r.item_id},{r.timestamp},{r.rating}\n" for r in ROWS)
    )
    runner = CliRunner()
    sets = _cli_sets(tmp_path, "profile.use_in_rerank=true")
    res = runner.invoke(app, ["index", str(catalog_path), "--interactions", str(inter), *sets])
    assert res.exit_code == 0, res.output
    assert "fit itemknn" in res.output  # index --interactions fits the CF source
    res = runner.invoke(app, ["recommend", "--user", "big", "-k", "3", "--json", *sets])
    assert res.exit_code == 0, res.output
    trace = json.loads(res.stdout)["trace"]
    assert trace["profile_used"] == ["rerank"] and trace["profile"]
    assert trace["sources"] == DEFAULT_SOURCES


def test_profile_switches_reach_demo(tmp_path) -> None:
    from genre_agent.cli.main import app

    data = tmp_path / "ml"
    data.mkdir()
    movies = ["movieId,title,genres"] + [
        f"{i},Film {i} ({1990 + i}),{'Comedy' if i % 2 else 'Drama|Horror'}" for i in range(1, 31)
    ]
    (data / "movies.csv").write_text("\n".join(movies) + "\n")
    (data / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,2,funny,1\n")
    ratings = ["userId,movieId,rating,timestamp"] + [
        f"{u},{i},{4.0 + (i % 2) / 2},{i}" for u in range(1, 8) for i in range(u, u + 12)
    ]
    (data / "ratings.csv").write_text("\n".join(ratings) + "\n")
    sets = _cli_sets(tmp_path, "profile.use_in_rerank=true")
    res = CliRunner().invoke(app, ["demo", "--data", str(data), "-k", "4", "--json", *sets])
    assert res.exit_code == 0, res.output
    trace = json.loads(res.stdout)["trace"]
    assert trace["profile_used"] == ["rerank"]
    assert trace["sources"] == DEFAULT_SOURCES


def test_profile_switches_reach_chat(tmp_path) -> None:
    from test_chat import make_rec

    from genre_agent.service.chat import ChatSession, SessionStore, scripted_intents

    rec = make_rec(tmp_path, scripted_intents(), name="chatprof", **{"profile.use_in_rerank": True})
    session = ChatSession.start(rec, SessionStore(":memory:"), profile="Likes: QUIRKYWORD.")
    session.send("something funny")
    assert any("QUIRKYWORD" in m.content for r in rec.llm.requests for m in r.messages)  # type: ignore[attr-defined]
    rec2 = make_rec(tmp_path, scripted_intents(), name="chatprof2")
    ChatSession.start(rec2, SessionStore(":memory:"), profile="Likes: QUIRKYWORD.").send("funny")
    assert not any(
        "QUIRKYWORD" in m.content
        for r in rec2.llm.requests  # type: ignore[attr-defined]
        if r.hint.get("task") != "intent"
        for m in r.messages
    )


# -- explanations: evidence first, words second ---------------------------------------------


def test_evidence_names_supporting_history_shared_attributes_and_signals(tmp_path, catalog_path):
    rec = make(
        tmp_path,
        catalog_path,
        ranking={"mode": "retrieval", "rationale_top_r": 0},
        retrieval={"sources": ALL_SOURCES},
    )
    rec.add_interactions(ROWS)
    rec.fit()
    out = rec.recommend(history=["m4", "m5"], query="parody space", k=5)
    assert all(i.rationale is None for i in out.items)  # no LLM: evidence only
    for it in out.items:
        ev = it.evidence
        assert ev is not None and 1 <= len(ev.history) <= 2
        assert {s.id for s in ev.history} <= {"m4", "m5"}
        assert set(ev.signals) <= set(ALL_SOURCES) and ev.signals
        for s in ev.history:  # shared attributes really are shared
            assert all(a in _attrs(rec, s.id) and a in _attrs(rec, it.item.id) for a in s.shared)
    assert any(ev.request for ev in (i.evidence for i in out.items) if ev)


def _attrs(rec, item_id):
    from genre_agent.ranking.grounding import attributes

    return attributes(rec.sources.lookup([item_id])[item_id])


def test_rationales_cite_only_evidence_and_end_in_a_sentence(tmp_path, catalog_path) -> None:
    import re

    rec = make(tmp_path, catalog_path, ranking={"rationale_top_r": 3})
    rec.add_interactions(ROWS)
    rec.fit()
    out = rec.recommend(history=["m4", "m5"], k=4)
    explained = [i for i in out.items if i.rationale]
    assert len(explained) == 3
    for it in explained:
        assert set(it.cites) <= set(it.evidence.ids()) and it.cites
        assert re.search(r"[.!?]$", it.rationale)
    req = next(r for r in rec.llm.requests if r.hint.get("task") == "explain")
    assert '"cites"' in req.regex and "m4" in req.regex  # ids are an enum of the evidence
    assert "Evidence:" in req.messages[1].content


def test_recommend_stream_gives_the_list_first_then_each_rationale(tmp_path, catalog_path):
    rec = make(tmp_path, catalog_path, ranking={"rationale_top_r": 3})
    rec.add_interactions(ROWS)
    rec.fit()
    events = list(rec.recommend_stream(history=["m4", "m5"], k=4))
    kinds = [e.kind for e in events]
    assert kinds == ["ranked", "rationale", "rationale", "rationale", "done"]
    first, done = events[0].recommendation, events[-1].recommendation
    assert all(i.rationale is None for i in first.items)
    assert all(i.evidence is not None for i in first.items)
    assert [i.item.id for i in first.items] == [i.item.id for i in done.items]
    assert [i.rationale is not None for i in done.items] == [True, True, True, False]
    plain = rec.recommend(history=["m4", "m5"], k=4)
    assert [(i.item.id, i.rationale) for i in plain.items] == [
        (i.item.id, i.rationale) for i in done.items
    ]


def test_grounding_flags_decades_and_genres_the_cited_item_does_not_share() -> None:
    from genre_agent.catalog.items import Item
    from genre_agent.ranking.grounding import (
        evidence_text,
        unsupported_decades,
        unsupported_genres,
    )
    from genre_agent.types import Evidence, Support

    item = Item(
        id="a",
        title="American Beauty (1999)",
        text="Genres: Drama.",
        metadata={"genres": "Drama", "year": 1999},
    )
    ev = Evidence(
        history=[
            Support(id="sw", title="Star Wars (1977)", by=["itemknn"], shared=[]),
            Support(id="go", title="Go (1999)", by=["embedding"], shared=["1990s", "genre Drama"]),
        ],
        shared=["1990s", "genre Drama"],
    )
    allowed = evidence_text(item, ev, ["sw"])
    assert unsupported_decades("Like Star Wars (1977), it shares the 1990s.", allowed) == ["1990s"]
    assert unsupported_genres("Like Star Wars (1977), it is a horror film.", allowed) == ["horror"]
    ok = evidence_text(item, ev, ["go"])
    assert unsupported_decades("Like Go (1999), it shares the 1990s.", ok) == []


def test_a_support_that_shares_nothing_is_not_offered_when_another_does() -> None:
    import re

    from genre_agent.ranking.rationales import _schema_regex

    rx = _schema_regex((("sw", "Star Wars (1977)", ()), ("go", "Go (1999)", ("1990s",))), 120)
    assert "Star Wars" not in rx and "Go \\(1999\\)" in rx
    assert re.fullmatch(
        rx, '{"rationale": "Like Go (1999), it shares the 1990s.", "cites": ["go"]}'
    )
    alone = _schema_regex((("sw", "Star Wars (1977)", ()),), 120)
    assert "Star Wars" in alone
