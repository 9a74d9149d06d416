"""The vectorised top-k (ScoreIndex) and popularity's pre-sorted walk against a plain sort."""

from __future__ import annotations

import random

import numpy as np
import pytest

from genre_agent.catalog.items import Item
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, ScoreIndex, rank_by_scores
from retrievers.popularity import PopularityRetriever


def reference(
    items: dict[str, Item],
    ids: list[str],
    scores: list[float],
    query: RetrievalQuery,
    k: int,
    positive_only: bool,
) -> list[tuple[str, float]]:
    """Sort everything admitted by (score descending, id ascending), keep k."""
    skip = set(query.exclude_ids) | {h.id for h in query.history}
    kept = [
        (i, s)
        for i, s in zip(ids, scores, strict=True)
        if i in items
        and i not in skip
        and (query.allowed_ids is None or i in query.allowed_ids)
        and (s > 0 or not positive_only)
    ]
    return sorted(kept, key=lambda t: (-t[1], t[0]))[:k]


def world(rng: random.Random, n: int) -> tuple[dict[str, Item], list[str]]:
    """n ids in a shuffled order (ids of mixed length, so string order != number order);
    about a tenth of them are not in the catalog."""
    ids = [str(rng.randrange(10 ** rng.randint(1, 5))) + f"x{n_}" for n_ in range(n)]
    rng.shuffle(ids)
    items = {i: Item(id=i, title=f"t{i}") for i in ids if rng.random() > 0.1}
    return items, ids


def random_query(rng: random.Random, items: dict[str, Item], ids: list[str]) -> RetrievalQuery:
    pick = list(items)
    history = tuple(items[i] for i in rng.sample(pick, rng.randint(0, min(30, len(pick)))))
    exclude = frozenset(rng.sample(ids, rng.randint(0, min(10, len(ids)))) + ["not-an-id"])
    allowed = None
    if rng.random() < 0.5:
        allowed = frozenset(rng.sample(ids, rng.randint(0, len(ids))) + ["elsewhere"])
    return RetrievalQuery(history=history, exclude_ids=exclude, allowed_ids=allowed)


@pytest.mark.parametrize("seed", range(40))
def test_score_index_matches_a_plain_sort(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 5, 50, 400])
    items, ids = world(rng, n)
    index = ScoreIndex(items, ids)
    for _ in range(5):
        # Few distinct values: many ties, zeros and negatives.
        scores = [float(rng.choice([-1.5, -0.0, 0.0, 0.25, 0.5, 2.0, rng.random()])) for _ in ids]
        query = random_query(rng, items, ids)
        k = rng.choice([0, 1, 3, 10, n, n + 5])
        for positive_only in (False, True):
            want = reference(items, ids, scores, query, k, positive_only)
            got = index.top(np.array(scores), query, k, positive_only)
            assert got == want
            cands = index.search(np.array(scores), query, k, "src", positive_only)
            assert [(c.item.id, c.score) for c in cands] == want
            old = rank_by_scores(items, dict(zip(ids, scores, strict=True)), query, k, "src")
            if not positive_only:
                assert [(c.item.id, c.score) for c in old] == want


def test_an_allowed_set_is_not_reused_for_another() -> None:
    items = {i: Item(id=i, title=i) for i in "abcd"}
    index = ScoreIndex(items, list("abcd"))
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    first = RetrievalQuery(allowed_ids=frozenset("ab"))
    second = RetrievalQuery(allowed_ids=frozenset("cd"))
    assert [i for i, _ in index.top(scores, first, 10)] == ["a", "b"]
    assert [i for i, _ in index.top(scores, second, 10)] == ["c", "d"]
    assert [i for i, _ in index.top(scores, first, 10)] == ["a", "b"]


def test_fast_candidates_equal_validated_ones() -> None:
    items = {"a": Item(id="a", title="A")}
    got = ScoreIndex(items, ["a"]).search(np.array([1.0]), RetrievalQuery(), 1, "s")
    assert got == [Candidate(item=items["a"], score=1.0, source="s")]


@pytest.mark.parametrize("seed", range(20))
def test_popularity_walk_matches_a_plain_sort(seed: int) -> None:
    rng = random.Random(seed)
    items, ids = world(rng, rng.choice([1, 30, 300]))
    counts = {i: rng.choice([0, 1, 2, 5]) for i in ids if rng.random() > 0.2}
    source = PopularityRetriever(items, counts)
    cat = list(items)
    for _ in range(5):
        query = random_query(rng, items, ids)
        k = rng.choice([0, 1, 10, len(cat) + 3])
        want = reference(items, cat, [float(counts.get(i, 0)) for i in cat], query, k, False)
        assert [(c.item.id, c.score) for c in source.search(query, k)] == want


def test_embedding_hits_from_the_catalog_equal_hits_from_the_store(fake_rec) -> None:
    """The embedding source takes its hits from the loaded catalog (and its history vectors
    from a per-item cache): the same candidates as rebuilding every hit from the store."""
    from retrievers.embedding import EmbeddingRetriever

    catalog = fake_rec.sources.catalog()
    history = tuple(catalog[i] for i in ("m1", "m2", "m3"))
    partial = {i: it for n, (i, it) in enumerate(sorted(catalog.items())) if n % 2}
    for where in (None, {"year": {"$gte": 2000}}):
        query = RetrievalQuery(history=history, where=where, exclude_ids=frozenset({"m4"}))
        plain = EmbeddingRetriever(fake_rec.store).search(query, 8)
        assert len(plain) == 8
        for items in (catalog, partial):
            cached = EmbeddingRetriever(fake_rec.store, items=items)
            assert cached.search(query, 8) == plain
            assert cached.search(query, 8) == plain  # the vectors now come from the cache
