"""Popularity tiers in the ranking prompt (ranking.popularity_hint): tiers, no label leak,
the same text at training and serving time, items handed back without the hint."""

from __future__ import annotations

from pathlib import Path

from genre_agent.catalog.items import load_items
from genre_agent.config import RankingConfig, TuneConfig
from genre_agent.llm import FakeLLM
from genre_agent.ranking.popularity_hint import NICHE, popularity_tiers
from genre_agent.storage.interactions import Interaction
from genre_eval.datasets import DatasetConfig, load_dataset
from genre_eval.experiment import load_experiment
from genre_eval.fixtures import write_jsonl_dataset
from genre_eval.protocols import train_interactions
from genre_eval.runner import Runner
from genre_eval.tuning import build_examples, score_request, training_tiers


def test_tiers_follow_count_shares_and_ties_share_a_tier() -> None:
    counts = {f"i{n}": 200 - n for n in range(200)}  # i0 most popular
    counts |= {"tie_a": 198, "tie_b": 198, "zero": 0}
    tiers = popularity_tiers(counts, n_items=1000)  # 1% = 10 items, 5% = 50, 20% = 200
    assert tiers["i0"] == "very popular"
    assert tiers["tie_a"] == tiers["tie_b"] == tiers["i2"]
    assert tiers["i30"] == "popular" and tiers["i120"] == "known"
    assert tiers["zero"] == NICHE
    assert popularity_tiers({}, 10) == {}


def test_eval_hint_counts_training_interactions_only(tmp_path: Path) -> None:
    data = write_jsonl_dataset(tmp_path / "data")
    exp = load_experiment(
        {
            "name": "p",
            "dataset": {"kind": "jsonl", "path": str(data)},
            "protocol": {"kind": "sampled", "n_candidates": 8, "users": 6, "min_history": 3},
            "config": {
                "llm": {"engine": "fake"},
                "retrieval": {"sources": {"embedding": 1.0}},
                "embedder": {"kind": "fake"},
            },
            "variants": [
                {"name": "hint", "mode": "scoring", "overrides": {"ranking.popularity_hint": True}}
            ],
            "baselines": [],
            "ks": [1, 5],
            "primary": "ndcg@5",
        }
    )
    prompts: list[str] = []

    def script(req):
        prompts.append(req.messages[-1].content)
        return {lab: -float(i) for i, lab in enumerate(req.labels)}

    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("first", score_script=script))
    run.run()
    ds = run.prepared.ds
    tiers = training_tiers(ds)
    # The harness and `genre tune` count the same interactions (held-out targets excluded).
    held_out = {r.item_id for rows in ds.by_user.values() for r in rows[-2:]}
    counted = {r.item_id for r in train_interactions(ds)}
    assert all(tiers[i] == NICHE for i in held_out - counted)
    assert len(prompts) == len(run.prepared.cases)
    for text, case in zip(prompts, run.prepared.cases, strict=True):
        for cand in case.candidates:
            title = ds.items[cand].title
            line = next(x for x in text.splitlines() if f"] {title}:" in x)
            assert f"Popularity: {tiers[cand]}." in line


def test_training_prompt_carries_the_same_hint(tmp_path: Path) -> None:
    ds = load_dataset(DatasetConfig(kind="jsonl", path=write_jsonl_dataset(tmp_path / "d")))
    ex = build_examples(ds, TuneConfig(n_examples=1, n_candidates=8, min_history=3))[0]
    ranking = RankingConfig(mode="scoring", popularity_hint=True)
    text = score_request(ex, ds, 5, ranking).messages[-1].content
    tiers = training_tiers(ds)
    assert all(f"Popularity: {tiers[c]}." in text for c in ex.candidates)
    plain = score_request(ex, ds, 5, RankingConfig(mode="scoring")).messages[-1].content
    assert "Popularity:" not in plain


def test_recommender_prompt_has_the_hint_but_items_do_not(tmp_path: Path, catalog_path) -> None:
    from genre_agent import Recommender
    from genre_agent.embedders.fake import FakeEmbedder

    prompts: list[str] = []

    def script(req):
        prompts.append(req.messages[-1].content)
        return {lab: -float(i) for i, lab in enumerate(req.labels)}

    rec = Recommender.from_config(
        {
            "store": {
                "kind": "memory",
                "collection": f"p{tmp_path.name[-20:]}",
                "interactions_path": str(tmp_path / "i.sqlite"),
            },
            "llm": {"engine": "fake"},
            "retrieval": {"sources": {"embedding": 1.0}},
            "ranking": {"mode": "scoring", "k": 3, "popularity_hint": True},
        },
        llm=FakeLLM("first", score_script=script),
        embedder=FakeEmbedder(),
    )
    try:
        rec.index(catalog_path)
        items = load_items(catalog_path)
        rec.add_interactions(
            [Interaction(f"u{n}", it.id, float(n), 5.0) for n in range(5) for it in items[:1]]
        )
        out = rec.recommend(query="a funny space movie", k=3)
    finally:
        rec.close()
    assert prompts and "Popularity: " in prompts[0]
    top = next((x for x in prompts[0].splitlines() if f"] {items[0].title}:" in x), None)
    assert top is None or "Popularity: very popular." in top
    assert all(not it.item.text.startswith("Popularity:") for it in out.items)
