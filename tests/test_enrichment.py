"""Enrichment job: constrained JSON, checkpoint resume, cache, invalid answers reported."""

from __future__ import annotations

import json
import re

from test_chat import catalog, make_rec

from genre_agent.config import EnrichConfig
from genre_agent.llm.fake import FakeLLM
from genre_agent.service.enrichment import Enricher, enrich_regex


def answer(req) -> str:
    if req.hint["item_id"] == "3":
        return '{"summary": "oops", "keywords": []}'  # invalid: empty keyword list
    return json.dumps(
        {"summary": f"A film called {req.hint['title']}.", "keywords": ["zzkeyword", "film"]}
    )


def test_regex() -> None:
    rx = enrich_regex(EnrichConfig())
    assert re.fullmatch(rx, '{"summary": "A funny space film.", "keywords": ["space", "comedy"]}')
    assert not re.fullmatch(rx, '{"summary": "A funny space film.", "keywords": []}')
    assert not re.fullmatch(rx, '{"summary": "A funny space film.", "keywords": ["a"], "x": 1}')


def test_enrich_resume_and_cache(tmp_path) -> None:
    rec = make_rec(tmp_path, "first", name="enrcol")
    items = catalog()[:6]
    ck = tmp_path / "enrich.jsonl"
    llm = FakeLLM(script=answer)
    ticks: list[tuple[int, int]] = []
    rep = Enricher(llm, EnrichConfig(batch_size=2)).run(
        items[:4], store=rec.store, checkpoint=ck, progress=lambda d, t: ticks.append((d, t))
    )
    assert rep.done == 3 and [x["item_id"] for x in rep.invalid] == ["3"]
    assert ticks[-1] == (4, 4)
    stored = rec.store.get(["1", "3"])
    assert stored["1"].metadata["enriched"] is True and "zzkeyword" in stored["1"].text
    assert "enriched" not in stored["3"].metadata  # invalid answer: item left as it was
    # Resume after a "kill" with a truncated last line: cached items are not asked again.
    with ck.open("a") as fh:
        fh.write('{"key": "trunc')
    llm2 = FakeLLM(script=answer)
    rep2 = Enricher(llm2, EnrichConfig(batch_size=2)).run(items, store=rec.store, checkpoint=ck)
    asked = [r.hint["item_id"] for r in llm2.requests]
    assert asked == ["3", "5", "6"] and rep2.cached == 3 and rep2.done == 2
    # Enriched text is embedded: a keyword-only query finds an enriched item first.
    hits = rec.store.query(rec.store.embedder.embed(["zzkeyword"])[0], 1)
    assert hits[0][0].metadata.get("enriched") is True
    # Already enriched copies are skipped; unchanged upserts stay unchanged.
    rep3 = Enricher(llm2, EnrichConfig()).run(list(rec.store.get(["1"]).values()), checkpoint=ck)
    assert rep3.skipped == 1
