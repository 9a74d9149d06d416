"""The chat benchmark: generator, case files, metrics (each shown failing on a known-bad
case), and ``genre eval chat`` end to end on the fixture catalog (fake embedder, no LLM)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_agent.catalog.items import load_items
from genre_agent.errors import GenreError
from genre_eval.chat_bench import (
    PRF,
    Expect,
    generate,
    load_cases,
    percentile,
    pick_ok,
    resolve,
    slot_prf,
)
from genre_eval.cli import app

CATALOG = Path(__file__).parent / "fixtures" / "catalog.jsonl"
HAND = Path(__file__).parents[1] / "eval" / "chat_bench"


def test_generator_is_seeded_and_covers_every_wish_kind() -> None:
    items = load_items(CATALOG)
    a = generate(items, n=120, seed=3)
    b = generate(items, n=120, seed=3)
    c = generate(items, n=120, seed=4)
    assert [x.model_dump() for x in a] == [x.model_dump() for x in b]
    assert [x.model_dump() for x in a] != [x.model_dump() for x in c]
    assert len(a) == 120
    kinds = Counter(x.kind for x in a)
    assert set(kinds) >= {"genre", "mood", "negation", "decade", "bound", "reference", "followup"}
    ids = {it.id for it in items}
    for case in a:
        for t in case.turns:
            assert set(t.expect.references) <= ids
    assert any(len(x.turns) > 1 for x in a)


def test_hand_written_parts_load_against_the_real_vocabulary() -> None:
    hand = load_cases(HAND / "handwritten.jsonl")
    holdout = load_cases(HAND / "handwritten_holdout.jsonl")
    assert len(hand) >= 50 and {c.part for c in hand} == {"hand"}
    assert len(holdout) >= 20 and {c.part for c in holdout} == {"hand-holdout"}


def test_case_file_errors_name_file_line_and_value(tmp_path: Path) -> None:
    items = {it.id: it for it in load_items(CATALOG)}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"id": "x", "turns": [{"text": "hi", "expect": {"references": ["nope"]}}]})
        + "\n"
    )
    with pytest.raises(GenreError, match=r"bad.jsonl:1: case x: .*nope"):
        load_cases(bad, items)
    bad.write_text('{"id": "x", "turns": []}\n')
    with pytest.raises(GenreError, match=r"bad.jsonl:1"):
        load_cases(bad)


def test_slot_prf_fails_on_known_bad_extractions() -> None:
    gold = [{"genres_include": ["Comedy"], "year_min": 1980, "references": ["1"]}]
    perfect = slot_prf(gold, gold)
    assert all(v.f1 == 1.0 for v in perfect.values())
    # An extractor that finds nothing: recall 0 on every slot with a wish.
    empty = slot_prf(gold, [{}])
    assert empty["genres_include"].recall == 0.0 and empty["genres_include"].f1 == 0.0
    assert empty["year_min"].f1 == 0.0 and empty["references"].f1 == 0.0
    # One that says everything: precision drops.
    noisy = slot_prf(gold, [{"genres_include": ["Comedy", "Drama", "Horror", "War"]}])
    assert noisy["genres_include"].precision == 0.25
    # A wrong year bound is both a false positive and a miss.
    wrong = slot_prf(gold, [{"year_min": 1990}])
    assert wrong["year_min"] == PRF(0, 1, 1)


def test_pick_ok_fails_each_hard_wish() -> None:
    w = {
        "genres_include": ["Comedy"],
        "genres_exclude": ["Romance"],
        "year_min": 2000,
        "year_max": 2010,
        "references": ["1"],
    }
    assert pick_ok(["Comedy", "Sci-Fi"], 2005, "9", w, ["Horror", "Sci-Fi"])
    assert not pick_ok(["Drama"], 2005, "9", w)  # wanted genre missing
    assert not pick_ok(["Comedy", "Romance"], 2005, "9", w)  # unwanted genre
    assert not pick_ok(["Comedy"], 1999, "9", w)  # too old
    assert not pick_ok(["Comedy"], 2011, "9", w)  # too new
    assert not pick_ok(["Comedy"], None, "9", w)  # unknown year cannot satisfy a bound
    assert not pick_ok(["Comedy", "Sci-Fi"], 2005, "1", w, ["Sci-Fi"])  # the named title
    assert not pick_ok(["Comedy"], 2005, "9", w, ["Horror", "Sci-Fi"])  # shares no genre


def test_relative_years_resolve_from_the_last_picks() -> None:
    e = Expect(genres_include=["Drama"], year_max="older_than_last")
    assert resolve(e, [1999, 1987, None])["year_max"] == 1986
    assert resolve(Expect(year_min="newer_than_last"), [1999, 1987])["year_min"] == 2000


def test_percentile() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0, 10.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 10.0], 100) == 10.0


def _spec(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    items = load_items(CATALOG)
    (data / "items.jsonl").write_text(
        "".join(json.dumps(it.model_dump(mode="json")) + "\n" for it in items)
    )
    rows = [
        {"user_id": f"u{u}", "item_id": items[(u * 3 + k) % len(items)].id, "timestamp": k}
        for u in range(6)
        for k in range(6)
    ]
    (data / "interactions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    hand = tmp_path / "hand.jsonl"
    alien = next(it.id for it in items if it.title == "Alien (1979)")
    hand.write_text(
        json.dumps(
            {
                "id": "h1",
                "part": "hand",
                "turns": [
                    {
                        "text": "something like Alien but funnier",
                        "expect": {"references": [alien], "genres_include": ["Comedy"]},
                    },
                    {
                        "text": "older ones",
                        "expect": {
                            "references": [alien],
                            "genres_include": ["Comedy"],
                            "year_max": "older_than_last",
                        },
                    },
                ],
            }
        )
        + "\n"
    )
    spec = tmp_path / "chat.toml"
    spec.write_text(
        """name = "chat_fixture"
templated = 40
handwritten = ["hand.jsonl"]
reference = "normaliser"
[dataset]
kind = "jsonl"
path = "data"
[config]
"embedder.kind" = "fake"
"llm.engine" = "fake"
"retrieval.sources" = { embedding = 1.0, bm25 = 1.0 }
"ranking.rationale_top_r" = 0
"chat.k" = 3
[[variants]]
name = "query"
set = { "chat.intent" = "query" }
[[variants]]
name = "normaliser"
set = { "chat.intent" = "normaliser" }
"""
    )
    return spec


def test_genre_eval_chat_end_to_end(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["chat", str(spec), "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    norm = summary["variants"]["normaliser"]
    query = summary["variants"]["query"]
    # The query-only baseline extracts nothing; the normaliser extracts wishes, and its
    # picks meet them far more often.
    assert query["template"]["slots"]["genres_include"]["f1"] == 0.0
    assert norm["template"]["slots"]["genres_include"]["f1"] > 0.9
    assert norm["template"]["pick_share"] > query["template"]["pick_share"]
    assert "vs_reference" in query["template"]
    turns = [json.loads(x) for x in (out / "normaliser.jsonl").read_text().splitlines()]
    h1 = [t for t in turns if t["case"] == "h1"]
    assert h1[0]["pred"]["references"] == h1[0]["gold"]["references"]
    assert all(p["id"] not in h1[0]["gold"]["references"] for p in h1[0]["picks"])
    assert isinstance(h1[1]["gold"]["year_max"], int)  # resolved from turn 1's picks
    assert all(t["read_by"] == "normaliser" for t in turns)
    report = (out / "report.md").read_text()
    assert "Part: hand" in report and "Part: template" in report
    # The report alone can be rebuilt from the run directory.
    res = CliRunner().invoke(app, ["chat", str(spec), "--out", str(out), "--report-only"])
    assert res.exit_code == 0, res.output
