"""ranking.mode = "learned": features, training, label-blindness, persistence, the trace.

Fast tests on the fixture catalog with the hashing embedder and a scripted (or failing)
LLM; one real test trains on a slice of ml-latest-small.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from genre_agent import Recommender
from genre_agent.config import LearnedConfig
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.llm import FakeLLM
from genre_agent.ranking.learned import (
    BASE_FEATURES,
    LLM_FEATURE,
    FeatureRequest,
    LearnedModel,
    LearnedRankerError,
    feature_names,
    history_bucket,
)
from genre_agent.service.learn import (
    Example,
    check_label_blind,
    fit_booster,
    fit_ranker,
    last_item_split,
    train_ranker,
)
from genre_agent.storage.interactions import Interaction
from retrievers.base import RetrievalQuery

SOURCES = {"itemknn": 1.0, "bm25": 0.5, "embedding": 0.5, "popularity": 0.2}
# Comedy fans (m4..m12), horror fans (m1, m2, m3) and a long history: three users per taste
# so each target has co-watchers.
ROWS = [
    Interaction(f"c{u}", f"m{i}", float(t), 4.5)
    for u in range(6)
    for t, i in enumerate((4, 5, 6, 7, 8, 9, 10, 11, 12)[(u % 3) * 2 : (u % 3) * 2 + 5])
]
ROWS += [
    Interaction(f"h{u}", i, float(t), 5.0)
    for u in range(3)
    for t, i in enumerate(("m1", "m2", "m3"))
]
ROWS += [Interaction("big", f"m{i}", float(i), 4.0) for i in range(13, 40)]


class FailingLLM:
    """Any call is a test failure."""

    model_id = "failing"
    revision = "0"

    def generate(self, requests):  # pragma: no cover - must not run
        raise AssertionError("the LLM was called")

    def score_labels(self, requests):  # pragma: no cover - must not run
        raise AssertionError("the LLM was called")

    def close(self) -> None:
        return None


def make(tmp_path: Path, catalog_path: Path, llm=None, **learned: object) -> Recommender:
    config = {
        "store": {
            "kind": "embedded",
            "path": str(tmp_path / "chroma"),
            "interactions_path": str(tmp_path / "i.sqlite"),
        },
        "llm": {"engine": "fake"},
        "retrieval": {"sources": SOURCES, "n_candidates": 20},
        "ranking": {
            "mode": "learned",
            "rationale_top_r": 0,
            "learned": {
                "retrieved_negatives": 10,
                "random_negatives": 5,
                "n_estimators": 20,
                **learned,
            },
        },
    }
    rec = Recommender.from_config(config, llm=llm or FailingLLM(), embedder=FakeEmbedder())
    rec.index(catalog_path)
    rec.add_interactions(ROWS)
    rec.fit()
    return rec


def test_every_candidate_gets_every_named_feature(tmp_path, catalog_path) -> None:
    rec = make(tmp_path, catalog_path)
    names = feature_names(rec.config)
    assert names[:8] == [
        f"src.{k}.{w}"
        for k in ("itemknn", "bm25", "embedding", "popularity")
        for w in ("score", "rank")
    ]
    assert names[8:] == list(BASE_FEATURES) and LLM_FEATURE not in names
    catalog = rec.sources.catalog()
    history = (catalog["m4"], catalog["m5"])
    cands = [catalog[i] for i in ("m6", "m7", "m1", "m40")]
    req = FeatureRequest(RetrievalQuery(history=history), list(history), 2, cands)
    x = rec.feature_builder().matrix(req, None)
    assert x.shape == (4, len(names))
    col = {n: x[:, j] for j, n in enumerate(names)}
    counts = rec.interactions.item_counts()
    assert list(col["pop.log_count"]) == [math.log1p(counts.get(c.id, 0)) for c in cands]
    assert list(col["hist.liked"]) == [2.0] * 4 and list(col["hist.items"]) == [2.0] * 4
    # Comedies share the history's genre; the horror film does not.
    assert col["meta.genre_jaccard"][0] > col["meta.genre_jaccard"][2]
    # Ranks are fractions of the list; item-kNN finds m6 (co-watched) first.
    assert set(col["src.itemknn.rank"]) == {0.0, 1 / 3, 2 / 3, 1.0}
    assert col["src.itemknn.rank"][0] == 0.0
    assert np.isfinite(col["emb.mean_cos"]).all()


def test_feature_sources_are_config_only(tmp_path, catalog_path) -> None:
    rec = make(tmp_path, catalog_path, feature_sources=["bm25", "random"])
    assert feature_names(rec.config)[:4] == [
        "src.bm25.score",
        "src.bm25.rank",
        "src.random.score",
        "src.random.rank",
    ]


def test_a_feature_that_decides_the_label_decides_the_ranking() -> None:
    rng = np.random.default_rng(0)
    groups, xs, ys = 60, [], []
    for _ in range(groups):
        x = rng.normal(size=(10, 3))
        y = np.zeros(10)
        y[int(np.argmax(x[:, 1]))] = 1.0  # column 1 alone decides the target
        xs.append(x)
        ys.append(y)
    booster = fit_booster(
        np.vstack(xs),
        np.concatenate(ys),
        [10] * groups,
        LearnedConfig(n_estimators=50),
        ["a", "b", "c"],
    )
    model = LearnedModel(booster, ["a", "b", "c"], {})
    test = rng.normal(size=(12, 3))
    assert int(np.argmax(model.scores(test))) == int(np.argmax(test[:, 1]))
    # Monotone in column 1 with the others fixed.
    grid = np.column_stack([np.zeros(9), np.linspace(-2, 2, 9), np.zeros(9)])
    s = model.scores(grid)
    assert s[-1] > s[0]


def test_training_refuses_to_see_a_held_out_pair(tmp_path, catalog_path) -> None:
    rec = make(tmp_path, catalog_path)
    train, examples = last_item_split(ROWS)
    catalog = rec.sources.catalog()
    held = {(examples[0].user_id, examples[0].target)}
    with pytest.raises(LearnedRankerError, match="refusing to train"):
        train_ranker(rec.config, rec.store, catalog, train, examples, forbidden=held)
    # A held-out pair among the training interactions is refused too.
    row = train[0]
    with pytest.raises(LearnedRankerError, match="1 training interactions"):
        check_label_blind(train, examples[1:], {(row.user_id, row.item_id)})
    # Without it, training goes through and says what it checked.
    others = {("nobody", "m1")}
    model = train_ranker(rec.config, rec.store, catalog, train, examples, forbidden=others)
    assert model.provenance["forbidden_pairs_checked"] == 1
    assert model.provenance["groups"] == len(examples)


def test_missing_model_is_a_clear_error(tmp_path, catalog_path) -> None:
    rec = make(tmp_path, catalog_path)
    with pytest.raises(LearnedRankerError, match="genre fit --ranker"):
        rec.recommend(history=["m4", "m5"], k=3)


def test_fit_saves_and_a_reload_scores_identically(tmp_path, catalog_path) -> None:
    rec = make(tmp_path, catalog_path)
    report = fit_ranker(rec)
    assert (report.path / "provenance.json").exists() and report.path.name == "ranker"
    assert not list(report.path.parent.glob("*.tmp"))
    first = rec.recommend(history=["m4", "m5"], k=8)
    rec.close()
    again = make(tmp_path, catalog_path)  # a new process loads the saved model
    second = again.recommend(history=["m4", "m5"], k=8)
    assert [(i.item.id, i.score) for i in first.items] == [
        (i.item.id, i.score) for i in second.items
    ]
    loaded = LearnedModel.load(report.path)
    assert loaded.features == feature_names(again.config)
    x = np.random.default_rng(1).normal(size=(5, len(loaded.features)))
    assert list(loaded.scores(x)) == list(again.learned_model().scores(x))


def test_trace_names_the_features_and_the_llm_is_never_called_when_off(
    tmp_path, catalog_path
) -> None:
    rec = make(tmp_path, catalog_path)  # FailingLLM: any call fails the test
    fit_ranker(rec)
    out = rec.recommend(history=["m4", "m5"], k=5)
    assert out.trace.ranked_by == "learned"
    assert out.trace.features == feature_names(rec.config)
    scores = [i.score for i in out.items]
    assert scores == sorted(scores, reverse=True) and len(out.items) == 5
    ranked = rec.rank(["m1", "m6", "m7", "m30"], history=["m4", "m5"], k=4)
    assert ranked.trace.features == out.trace.features and len(ranked.items) == 4
    assert ranked.trace.seconds("learned") >= 0.0


def test_the_llm_feature_is_asked_only_in_its_bucket(tmp_path, catalog_path) -> None:
    llm = FakeLLM("first")
    rec = make(
        tmp_path, catalog_path, llm=llm, llm_feature={"cold": True, "short": False, "long": False}
    )
    fit_ranker(rec)
    assert LLM_FEATURE in rec.learned_model().features
    trained = len(llm.score_requests)
    assert trained > 0  # cold training users were scored
    cold = rec.recommend(history=["m4", "m5"], k=3)
    assert history_bucket(2) == "cold" and LLM_FEATURE in cold.trace.features
    assert len(llm.score_requests) > trained
    asked = len(llm.score_requests)
    long_history = [f"m{i}" for i in range(13, 40)]
    warm = rec.recommend(history=long_history, k=3)
    assert LLM_FEATURE not in warm.trace.features
    assert len(llm.score_requests) == asked  # the long bucket never asks


def test_a_model_trained_on_other_features_is_refused(tmp_path, catalog_path) -> None:
    rec = make(tmp_path, catalog_path)
    fit_ranker(rec)
    other = make(tmp_path, catalog_path, feature_sources=["bm25"])
    with pytest.raises(LearnedRankerError, match="genre fit --ranker"):
        other.recommend(history=["m4"], k=3)


DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ml-latest-small"


@pytest.mark.real
def test_real_learned_beats_popularity_on_held_out_targets(tmp_path) -> None:
    if not (DATA / "ratings.csv").exists():
        pytest.skip(f"ml-latest-small not found at {DATA} (the real test needs it)")
    from genre_agent.catalog.items import load_movielens_items
    from genre_agent.storage.interactions import read_interactions

    rows = read_interactions(DATA / "ratings.csv")
    users = sorted({r.user_id for r in rows}, key=int)[:150]
    keep = set(users)
    mine = [r for r in rows if r.user_id in keep]
    train, held = last_item_split(mine)  # each user's last interaction is held out
    config = {
        "store": {"kind": "memory", "collection": "learned_real"},
        "retrieval": {"sources": {"itemknn": 1.0, "bm25": 0.5, "popularity": 0.2}},
        "ranking": {"mode": "learned", "rationale_top_r": 0, "learned": {"random_negatives": 20}},
    }
    rec = Recommender.from_config(config, llm=FailingLLM(), embedder=FakeEmbedder())
    rec.index(load_movielens_items(DATA))
    rec.add_interactions(train)
    rec.fit()
    fit_ranker(rec)  # trains on the training part's own last interactions
    pop = Recommender(
        rec.config.model_copy(
            update={
                "ranking": rec.config.ranking.model_copy(update={"mode": "retrieval"}),
                "retrieval": rec.config.retrieval.model_copy(
                    update={"sources": {"popularity": 1.0}}
                ),
            }
        ),
        rec.store,
        rec.interactions,
        llm=FailingLLM(),
    )
    ids = sorted(rec.sources.catalog())
    hits = {"learned": 0, "popularity": 0}
    for ex in held:
        rng = random.Random(ex.user_id)
        seen = {r.item_id for r in ex.history} | {ex.target}
        negatives: list[str] = []
        while len(negatives) < 49:
            c = rng.choice(ids)
            if c not in seen and c not in negatives:
                negatives.append(c)
        cands = [ex.target, *negatives]
        rng.shuffle(cands)
        for name, system in (("learned", rec), ("popularity", pop)):
            out = system.rank(cands, history=list(ex.history), k=10)
            hits[name] += ex.target in [i.item.id for i in out.items]
    assert hits["learned"] > hits["popularity"], hits
    assert isinstance(held[0], Example)


def test_cli_fit_ranker_then_recommend(tmp_path, catalog_path) -> None:
    import json

    from typer.testing import CliRunner

    from genre_agent.cli.main import app

    inter = tmp_path / "inter.csv"
    inter.write_text(
        "user_id,item_id,timestamp,rating\n"
        + "".join(f"{r.user_id},{r.item_id},{r.timestamp},{r.rating}\n" for r in ROWS)
    )
    sets = [
        *("--set", "llm.engine=fake", "--set", "embedder.kind=fake"),
        *("--set", f"store.path={tmp_path / 'chroma'}"),
        *("--set", f"store.interactions_path={tmp_path / 'i.sqlite'}"),
        *("--set", f"profile.path={tmp_path / 'p.sqlite'}"),
        *("--set", "ranking.mode=learned", "--set", "ranking.rationale_top_r=0"),
        *("--set", "ranking.learned.n_estimators=10"),
    ]
    cli = CliRunner()
    # Indexing interactions in learned mode fits the sources and trains the ranker too.
    indexed = cli.invoke(app, ["index", str(catalog_path), "--interactions", str(inter), *sets])
    assert indexed.exit_code == 0, indexed.output
    assert "fit ranker:" in indexed.output
    (tmp_path / "models" / "ranker").unlink()  # the published link (storage/models.py)
    missing = cli.invoke(app, ["recommend", "--user", "c0", "-k", "3", *sets])
    # The entry point prints a LearnedRankerError as one line; CliRunner keeps the exception.
    assert isinstance(missing.exception, LearnedRankerError)
    assert "genre fit --ranker" in str(missing.exception)
    fit = cli.invoke(app, ["fit", "--ranker", *sets])
    assert fit.exit_code == 0, fit.output
    assert "fit ranker:" in fit.output
    out = cli.invoke(app, ["recommend", "--user", "c0", "-k", "3", "--json", *sets])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["trace"]["ranked_by"] == "learned" and data["trace"]["features"]
