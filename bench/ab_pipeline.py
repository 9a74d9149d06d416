"""The same requests, every ranking mode and door (recommend_many, rank_many,
recommend_stream, a cold user, a query-only request), through the checkout on PYTHONPATH;
prints every item, score, rationale, evidence and trace field (timings and the config hash
left out) as JSON, so two checkouts can be diffed (issue 20: the refactor changes no list).

Usage: cd CHECKOUT && PYTHONPATH=$PWD python bench/ab_pipeline.py - CHECKOUT > out.json
"""

import json
import sys
import tempfile
from pathlib import Path

from genre_agent import Recommender
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.llm import FakeLLM
from genre_agent.service.requests import RecRequest

sys.path.insert(0, sys.argv[2] + "/tests")
from test_pipeline import ROWS  # noqa: E402

CAT = Path(sys.argv[2]) / "tests/fixtures/catalog.jsonl"
HYBRID = {"embedding": 1.0, "itemknn": 1.0, "bm25": 0.5, "popularity": 0.5, "als": 0.7}
MODES = {
    "retrieval": {"mode": "retrieval", "rationale_top_r": 3},
    "learned": {
        "mode": "learned",
        "rationale_top_r": 2,
        "learned": {"retrieved_negatives": 10, "random_negatives": 5, "n_estimators": 20},
    },
    "scoring": {"mode": "scoring", "rationale_top_r": 2},
    "scoring_hint": {
        "mode": "scoring",
        "rationale_top_r": 2,
        "popularity_hint": True,
        "fusion_weight": 0.5,
    },
    "listwise": {"mode": "listwise"},
}


def dump(r):
    t = r.trace
    return {
        "items": [
            [
                i.item.id,
                i.score,
                i.llm_score,
                i.rationale,
                i.cites,
                i.unsupported_terms,
                i.evidence.model_dump() if i.evidence else None,
            ]
            for i in r.items
        ],
        "cands": [[c.item.id, c.score, c.evidence is not None] for c in t.candidates],
        "trace": {
            k: v
            for k, v in t.model_dump().items()
            if k not in ("timings", "config_sha256", "candidates")
        },
    }


out = {}
for name, ranking in MODES.items():
    tmp = Path(tempfile.mkdtemp())
    cfg = {
        "store": {
            "kind": "embedded",
            "path": str(tmp / "c"),
            "interactions_path": str(tmp / "i.sqlite"),
        },
        "profile": {"path": str(tmp / "p.sqlite")},
        "llm": {"engine": "fake"},
        "retrieval": {"sources": HYBRID, "n_candidates": 15},
        "ranking": ranking,
    }
    llm = FakeLLM("first", score_script="by_id")
    rec = Recommender.from_config(cfg, llm=llm, embedder=FakeEmbedder())
    rec.index(CAT)
    rec.add_interactions(ROWS)
    rec.fit()
    if name == "learned":
        from genre_agent.service.learn import fit_ranker

        fit_ranker(rec)
    reqs = [RecRequest(user_id=u, k=4) for u in ("c0", "c1", "h0", "big")]
    reqs += [
        RecRequest(history=["m4", "m5"], query="space parody", k=3),
        RecRequest(history=["m1"], filters={"genre_comedy": True}, k=5),
        RecRequest(user_id="nobody", k=3),
    ]
    res = {"many": [dump(r) for r in rec.recommend_many(reqs)]}
    res["rank"] = [
        dump(r)
        for r in rec.rank_many(
            [
                (["m7", "m3", "m9", "m12", "m20"], RecRequest(history=["m4"], k=3)),
                (["m2", "m1", "m30"], RecRequest(user_id="c2", k=2)),
            ]
        )
    ]
    ev = list(rec.recommend_stream(user_id="c3", k=3))
    res["stream"] = [
        [e.kind, dump(e.recommendation) if e.recommendation else e.item.item.id] for e in ev
    ]
    res["query_only"] = dump(rec.recommend(query="horror", k=3))
    out[name] = res
print(json.dumps(out, sort_keys=True, default=str))
