"""ALS and BPR sources (retrievers/mf.py) and cold requests (the popularity list).

Fast tests on tiny fixtures; one ``real`` test fits both on a slice of ml-latest-small and
checks each beats popularity on every user's held-out last item, through the Recommender.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from genre_agent import Recommender
from genre_agent.catalog.items import Item
from genre_agent.config import ALSConfig, BPRConfig, load_config
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.llm import FakeLLM
from genre_agent.service.fit import FITTERS, fit_source, load_fitted
from genre_agent.service.sources import Sources
from genre_agent.storage.chroma import ChromaStore, make_client
from genre_agent.storage.interactions import Interaction, InteractionStore
from retrievers.base import RetrievalQuery
from retrievers.mf import ALSRetriever, BPRRetriever, MFRetriever

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENRE_DEMO_DATA", ROOT.parent / "shared/data/ml-latest-small"))

# Twelve items in four groups; each user watches the items of one group (the "a" group
# is A and B only, so whoever watched A also watched B).
ITEMS = {i: Item(id=i, title=f"Item {i}", text="") for i in "ABCDEFGHIJKL"}
GROUPS = ["AB", "CDE", "FGH", "IJKL"]
ROWS = [
    Interaction(f"u{g}{n}", item, float(t), 4.0)
    for g, group in enumerate(GROUPS)
    for n in range(6)
    for t, item in enumerate(group)
]
SMALL_ALS = ALSConfig(factors=8, regularization=0.1, iterations=20, alpha=2.0)
SMALL_BPR = BPRConfig(factors=8, learning_rate=0.05, iterations=200, regularization=0.01)
KINDS = {"als": (ALSRetriever, SMALL_ALS), "bpr": (BPRRetriever, SMALL_BPR)}


def fit(kind: str, **over: object) -> MFRetriever:
    cls, cfg = KINDS[kind]
    return cls.fit(ITEMS, ROWS, cfg.model_copy(update=over))  # type: ignore[attr-defined]


def query(*history: str, **kw: object) -> RetrievalQuery:
    return RetrievalQuery(history=tuple(ITEMS[h] for h in history), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_a_history_of_a_ranks_its_companion_first(kind: str) -> None:
    model = fit(kind)
    assert [c.item.id for c in model.search(query("A"), 1)] == ["B"]
    assert [c.item.id for c in model.search(query("F", "G"), 1)] == ["H"]
    # score() agrees with search() on the same request.
    scores = model.score(query("A"), ["B", "C", "J"])
    assert scores[0] > max(scores[1:])
    assert model.search(query("A"), 3)[0].source == kind


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_history_exclusions_and_the_filter_are_honoured(kind: str) -> None:
    model = fit(kind)
    found = [c.item.id for c in model.search(query("C"), 12)]
    assert "C" not in found and len(found) == 11
    skipped = [c.item.id for c in model.search(query("C", exclude_ids=frozenset("D")), 12)]
    assert "D" not in skipped and skipped[0] == "E"
    allowed = frozenset({"A", "J", "K"})
    kept = [c.item.id for c in model.search(query("C", allowed_ids=allowed), 12)]
    assert sorted(kept) == ["A", "J", "K"]
    # No history item the model knows: no evidence, nothing found, zero scores.
    stranger = RetrievalQuery(history=(Item(id="zz", title="?", text=""),))
    assert model.search(stranger, 5) == [] and model.score(stranger, ["A"]) == [0.0]


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_save_load_round_trip_scores_identically(kind: str, tmp_path: Path) -> None:
    model = fit(kind)
    model.save(tmp_path)
    again = type(model).load(tmp_path, ITEMS)
    q = query("A", "F")
    ids = sorted(ITEMS)
    assert again.score(q, ids) == model.score(q, ids)
    assert again.search(q, 12) == model.search(q, 12)
    assert again.params == model.params


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_fits_are_reproducible_with_their_seed(kind: str) -> None:
    a, b, other = fit(kind), fit(kind), fit(kind, seed=1)
    assert np.array_equal(a.factors, b.factors)
    assert not np.array_equal(a.factors, other.factors)


def test_als_fold_in_is_implicits_recalculate_user() -> None:
    """The closed-form fold-in equals implicit's own user step on the same factors."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = fit("als")
    assert isinstance(model, ALSRetriever)
    peer = AlternatingLeastSquares(factors=8, regularization=SMALL_ALS.regularization, alpha=1.0)
    peer.item_factors = model.factors.astype(np.float32)
    peer.user_factors = np.zeros((1, 8), dtype=np.float32)
    idx = np.array(sorted(model.pos[h] for h in "AFG"))
    row = csr_matrix(
        (np.full(3, model.confidence(), dtype=np.float32), ([0, 0, 0], idx)), shape=(1, 12)
    )
    theirs = np.asarray(peer.recalculate_user(0, row)).ravel()
    assert np.allclose(model._user_vector(idx), theirs, rtol=1e-4, atol=1e-5)


def test_als_rating_weighting_folds_in_with_the_mean_weight() -> None:
    model = fit("als", weighting="rating")
    assert isinstance(model, ALSRetriever)
    assert model.params["fold_weight"] == pytest.approx(4.0)
    assert model.confidence() == pytest.approx(1 + 2.0 * 4.0)
    assert fit("als").params["fold_weight"] == 1.0


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_fit_source_writes_provenance_and_serving_loads_it(kind: str, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        overrides={
            "store.models_path": str(tmp_path / "models"),
            f"retrieval.{kind}": KINDS[kind][1].model_dump(),
        },
        use_env=False,
    )
    store = InteractionStore(":memory:")
    store.add(ROWS)
    report = fit_source(cfg, kind, ITEMS, store)
    prov = json.loads((report.path / "provenance.json").read_text())
    assert prov["kind"] == kind and prov["data_sha256"] == store.fingerprint()
    assert prov["interactions"] == len(ROWS) and prov["users"] == 24
    assert prov["config"] == FITTERS[kind].settings(cfg) == KINDS[kind][1].model_dump()
    served = load_fitted(cfg, kind, ITEMS, store)
    q = query("I", "J")
    assert served.score(q, sorted(ITEMS)) == fit(kind).score(q, sorted(ITEMS))


def _recommender(tmp_path: Path, catalog_path: Path, **over: object) -> Recommender:
    overrides = {
        "store.kind": "memory",
        "store.collection": f"mf{tmp_path.name[-20:]}",
        "store.models_path": str(tmp_path / "models"),
        "profile.path": str(tmp_path / "p.sqlite"),
        "llm.engine": "fake",
        # An LLM ranking mode: a cold request must still not reach the LLM.
        "ranking.mode": "scoring",
        "retrieval.sources": {"embedding": 1.0, "popularity": 0.5},
        **over,
    }
    cfg = load_config(None, overrides=overrides, use_env=False)
    store = ChromaStore(make_client(cfg.store), cfg.store.collection, FakeEmbedder())
    rec = Recommender(cfg, store, InteractionStore(":memory:"), llm=FakeLLM("first"))
    rec.index(catalog_path)
    return rec


def test_a_cold_request_gets_the_popularity_list(tmp_path: Path, catalog_path: Path) -> None:
    rec = _recommender(tmp_path, catalog_path)
    counts = {"m7": 5, "m2": 4, "m15": 3, "m1": 2, "m9": 1}
    rec.add_interactions(
        [Interaction(f"u{n}", item) for item, c in counts.items() for n in range(c)]
    )
    out = rec.recommend(user_id="nobody", k=4)
    assert [it.item.id for it in out.items] == ["m7", "m2", "m15", "m1"]
    tr = out.trace
    assert tr.strategy == "popular" and tr.ranked_by == "popularity"
    assert tr.sources == {"popularity": 1.0}
    assert any("cold start: no history, query or profile" in n for n in tr.notes)
    assert all(it.rationale is None for it in out.items)
    assert isinstance(rec.llm, FakeLLM) and not rec.llm.requests and not rec.llm.score_requests
    # Exclusions and filters are honoured (m2 is from 1986, m1 from 1979).
    skip = rec.recommend(user_id="nobody", k=2, exclude=["m7"])
    assert [it.item.id for it in skip.items] == ["m2", "m15"]
    recent = rec.recommend(k=3, filters={"year": {"$gte": 1990}})
    assert [it.item.id for it in recent.items] == ["m7", "m15", "m9"]
    # The same through rank(): the caller's candidates in popularity order.
    ranked = rec.rank(["m9", "m1", "m7"], k=3)
    assert [it.item.id for it in ranked.items] == ["m7", "m1", "m9"]
    assert ranked.trace.strategy == "popular"
    # Streaming: the popularity list, no rationale events.
    events = list(rec.recommend_stream(user_id="nobody", k=2))
    assert [e.kind for e in events] == ["ranked", "done"]
    # A request with a history stays personal.
    warm = rec.recommend(history=["m1"], k=2)
    assert warm.trace.strategy == "personal" and rec.llm.score_requests


def _hit_and_ndcg(rec: Recommender, histories: dict[str, list[str]], held: dict[str, str]):
    from genre_agent.service.requests import RecRequest

    users = sorted(histories)
    outs = rec.recommend_many([RecRequest(user_id=u, history=histories[u], k=10) for u in users])
    hits, gains = [], []
    for u, out in zip(users, outs, strict=True):
        ids = [it.item.id for it in out.items]
        rank = ids.index(held[u]) + 1 if held[u] in ids else None
        hits.append(1.0 if rank else 0.0)
        gains.append(1.0 / math.log2(rank + 1) if rank else 0.0)
    return sum(hits) / len(hits), sum(gains) / len(gains)


@pytest.mark.real
def test_als_and_bpr_beat_popularity_on_ml_latest_small(tmp_path: Path) -> None:
    """Every user's last item (by time) held out from ml-latest-small; ALS and BPR fitted
    with the shipped defaults on the rest; 150 users' held-out items are then looked for in
    the top 10 of a Recommender whose only source is the model, over the whole catalog."""
    if not (DATA / "ratings.csv").exists():
        pytest.skip(f"ml-latest-small not found at {DATA} (set GENRE_DEMO_DATA)")
    from genre_eval.datasets import DatasetConfig, load_dataset

    ds = load_dataset(DatasetConfig(kind="movielens", path=DATA))
    train = [r for rows in ds.by_user.values() for r in rows[:-1]]
    users = sorted(ds.by_user, key=int)[:150]
    held = {u: ds.by_user[u][-1].item_id for u in users}
    histories = {u: [r.item_id for r in ds.by_user[u][:-1]] for u in users}
    interactions = InteractionStore(":memory:")
    interactions.add(train)
    base = {
        "store.kind": "memory",
        "store.models_path": str(tmp_path / "models"),
        "llm.engine": "fake",
        "ranking.mode": "retrieval",
        "ranking.rationale_top_r": 0,
    }
    store = ChromaStore(
        make_client(load_config(None, base, use_env=False).store), "mlx", FakeEmbedder()
    )

    def served(kind: str) -> Recommender:
        cfg = load_config(None, {**base, "retrieval.sources": {kind: 1.0}}, use_env=False)
        sources = Sources(cfg, store, interactions)
        sources.set_catalog(ds.items)
        return Recommender(cfg, store, interactions, llm=FakeLLM("first"), sources=sources)

    fitter = served("als")
    fitter.fit(["als", "bpr"])  # as `genre fit` does: saved with provenance, then loaded
    scores = {k: _hit_and_ndcg(served(k), histories, held) for k in ("popularity", "als", "bpr")}
    print(scores)
    for kind in ("als", "bpr"):
        assert scores[kind][0] > scores["popularity"][0], scores
        assert scores[kind][1] > scores["popularity"][1], scores


def test_the_harness_runs_als_and_bpr(tmp_path: Path) -> None:
    from genre_eval.fixtures import tiny_experiment, write_jsonl_dataset
    from genre_eval.runner import Runner, read_results

    data = write_jsonl_dataset(tmp_path / "data")
    small = {"retrieval": {"als": SMALL_ALS.model_dump(), "bpr": SMALL_BPR.model_dump()}}
    exp = tiny_experiment(data, baselines=["als", "bpr"], variants=[])
    exp = exp.model_copy(update={"config": {**exp.config, **small}})
    run = Runner(exp, tmp_path / "r")
    run.run()
    recs = read_results(tmp_path / "r")
    assert {r["system"] for r in recs} == {"als", "bpr"} and len(recs) == 2 * 8
    assert not any(r["failed"] for r in recs)


def test_genre_fit_source_als_then_serve_it(tmp_path: Path, catalog_path: Path) -> None:
    from test_cli import _sets
    from typer.testing import CliRunner

    from genre_agent.cli.main import app

    cli = CliRunner()
    inter = tmp_path / "inter.csv"
    lines = ["user_id,item_id,timestamp,rating"]
    lines += [f"g{u},{i},{t},4" for u in range(6) for t, i in enumerate(("m1", "m2", "m13"))]
    lines += [f"c{u},{i},{t},4" for u in range(6) for t, i in enumerate(("m8", "m9", "m11"))]
    inter.write_text("\n".join(lines) + "\n")
    sets = [*_sets(tmp_path), "--set", 'retrieval.sources={"als": 1.0}']
    sets += ["--set", "retrieval.als.factors=4", "--set", "ranking.rationale_top_r=0"]
    res = cli.invoke(app, ["index", str(catalog_path), "--interactions", str(inter), *sets])
    assert res.exit_code == 0, res.output
    fitted = cli.invoke(app, ["fit", "--source", "als", *sets])
    assert fitted.exit_code == 0, fitted.output
    assert "fit als: 36 interactions, 12 users" in fitted.stderr
    prov = json.loads((tmp_path / "models" / "als" / "provenance.json").read_text())
    assert prov["kind"] == "als" and prov["config"]["factors"] == 4
    out = cli.invoke(app, ["recommend", "--history", "m8,m9", "-k", "1", "--json", *sets])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert [i["item"]["id"] for i in got["items"]] == ["m11"]
    assert got["trace"]["strategy"] == "personal" and got["trace"]["sources"] == {"als": 1.0}
