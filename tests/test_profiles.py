"""Profiles: constrained regex, re-validation, reuse, edit, forget; cold start strategies."""

from __future__ import annotations

import json
import re

import pytest
from test_chat import catalog, make_rec

from genre_agent.catalog.items import Item
from genre_agent.config import ProfileConfig
from genre_agent.llm.fake import FakeLLM
from genre_agent.service.chat import scripted_intents
from genre_agent.service.profiles import (
    ProfileError,
    Profiles,
    ProfileStore,
    profile_regex,
    validate_profile,
)
from genre_agent.storage.interactions import Interaction


def profile_answer(ids: list[str], extra_bad: bool = False) -> str:
    ev = ids[:2] + (["999", ids[0]] if extra_bad else [])
    return json.dumps(
        {
            "liked": [{"topic": "Sci-Fi", "evidence": ev}],
            "disliked": [],
            "summary": "Likes science fiction films.",
        }
    )


def script(req):
    if req.hint.get("task") == "profile":
        return profile_answer(req.hint["history_ids"])
    return scripted_intents()(req)


def test_regex_constrains_evidence_to_history_ids() -> None:
    cfg = ProfileConfig()
    rx = profile_regex(["1", "2", "3"], cfg)
    assert re.fullmatch(rx, profile_answer(["1", "2"]))
    assert not re.fullmatch(rx, profile_answer(["1", "999"]))
    assert not re.fullmatch(rx, profile_answer(["1", "2"])[:-1] + ', "x": 1}')


def test_validate_reports_unknown_and_duplicate_evidence() -> None:
    prof, v = validate_profile(profile_answer(["1", "2"], extra_bad=True), {"1", "2"})
    assert prof.liked[0].evidence == ["1", "2"]
    assert sorted(x["reason"] for x in v) == ["duplicate evidence id", "unknown evidence id"]
    with pytest.raises(ProfileError):
        validate_profile('{"liked": [', {"1"})
    with pytest.raises(ProfileError):
        validate_profile('{"liked": [], "disliked": [], "summary": "x", "ids": []}', {"1"})


def test_build_reuse_edit_forget(tmp_path) -> None:
    llm = FakeLLM(script=script)
    items = catalog()[:4]
    profiles = Profiles(llm, ProfileStore(tmp_path / "p.sqlite"))
    rec = profiles.build("u1", items)
    assert rec.profile.liked[0].evidence == [items[0].id, items[1].id]
    assert rec.template_sha256 and rec.model_id == llm.model_id and not rec.violations
    n = len(llm.requests)
    assert profiles.build("u1", items).created == rec.created  # reused, no LLM call
    assert len(llm.requests) == n
    # Forget an item: gone from evidence now, and from the history of the rebuild.
    after = profiles.forget_item("u1", items[0].id)
    assert after is not None and items[0].id not in after.profile.evidence_ids()
    rebuilt = profiles.build("u1", items)
    assert len(llm.requests) == n + 1
    assert items[0].id not in llm.requests[-1].hint["history_ids"]
    assert items[0].title not in llm.requests[-1].messages[1].content
    assert items[0].id not in rebuilt.profile.evidence_ids()
    # Persisted: a new store on the same file sees the forgotten item and the profile.
    again = Profiles(llm, ProfileStore(tmp_path / "p.sqlite"))
    assert again.forgotten("u1") == {items[0].id}
    edited = again.edit("u1", {"liked": [{"topic": "Comedy", "evidence": []}], "summary": "x"})
    assert edited.edited and again.build("u1", items).profile.liked[0].topic == "Comedy"
    with pytest.raises(ProfileError):
        again.edit("u1", {"liked": [], "bogus": 1})
    assert again.forget_profile("u1") and again.get("u1") is None


def test_profile_switch_feeds_rerank_prompt(tmp_path) -> None:
    from genre_agent.service.requests import RecRequest

    req = RecRequest(query="comedy", k=2, profile="Likes: QUIRKYWORD.", profile_scope="config")
    rec = make_rec(tmp_path, script, name="profsw", **{"profile.use_in_rerank": True})
    rec.recommend_many([req])
    assert "QUIRKYWORD" in rec.llm.requests[-1].messages[1].content
    rec2 = make_rec(tmp_path, script, name="profsw2")
    rec2.recommend_many([req])
    assert "QUIRKYWORD" not in rec2.llm.requests[-1].messages[1].content


def test_cold_start_strategies(tmp_path) -> None:
    """The service's cold rule with cold.min_history = 6 (what `genre recommend --user`
    did before): a new user gets the popular items, or the stated request; 1-5 stored
    items an LLM profile of them; more the history."""
    rec = make_rec(
        tmp_path,
        script,
        name="coldcol",
        **{"cold.min_history": 6, "profile.path": str(tmp_path / "p.sqlite")},
    )
    # Nothing stated, nothing stored: the most popular items, without asking the LLM.
    top = [it.id for it in catalog()[3:5]]
    rec.add_interactions(
        [Interaction(f"u{n}", top[0]) for n in range(3)] + [Interaction("u0", top[1])]
    )
    calls = len(rec.llm.requests)
    rp = rec.recommend(user_id="new", k=2)
    assert rp.trace.strategy == "popular" and rp.trace.ranked_by == "popularity"
    assert [it.item.id for it in rp.items] == top
    assert len(rec.llm.requests) == calls
    r0 = rec.recommend(user_id="new", query="sci-fi horror", k=3)
    assert r0.trace.strategy == "stated" and len(r0.items) == 3
    ids = [it.id for it in catalog()[:2]]
    rec.add_interactions([Interaction("few", i, float(t)) for t, i in enumerate(ids)])
    r1 = rec.recommend(user_id="few", k=3)
    assert r1.trace.strategy == "few" and r1.trace.profile and "Sci-Fi" in r1.trace.profile
    assert r1.trace.profile_used == ["retrieval", "rerank"]
    assert "Likes science fiction films." in rec.llm.requests[-1].messages[1].content
    assert not set(ids) & {it.item.id for it in r1.items}
    many = [it.id for it in catalog()[:8]]
    rec.add_interactions([Interaction("many", i, float(t)) for t, i in enumerate(many)])
    r6 = rec.recommend(user_id="many", k=2)
    assert r6.trace.strategy == "personal" and r6.trace.profile is None
    # A history the caller passes is taken as given: two items are not cold.
    given = rec.recommend(history=ids, k=2)
    assert given.trace.strategy == "personal" and given.trace.profile is None


def test_new_item_retrievable_as_soon_as_indexed(tmp_path) -> None:
    rec = make_rec(tmp_path, script, name="newitem", **{"ranking.mode": "retrieval"})
    query = "zorblax quantum penguin documentary"
    before = rec.recommend(query=query, k=3, history=[])
    assert "new-1" not in {it.item.id for it in before.items}
    rec.index(
        [
            Item(
                id="new-1",
                title="Zorblax Quantum Penguin",
                text="A penguin documentary.",
                metadata={"year": 2026, "genres": "Documentary"},
            )
        ]
    )
    after = rec.recommend(query=query, k=3, history=[])
    assert after.items[0].item.id == "new-1"
    r = rec.recommend(user_id="n", query=query, k=1)
    assert r.items[0].item.id == "new-1" and r.trace.strategy == "stated"
