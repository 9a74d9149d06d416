"""Non-LLM baselines ranking the very same candidate sets as the LLM variants.

All are fit on training interactions only (see ``protocols.train_interactions``). Each
baseline scores the candidates; the list is ordered by descending score with ties broken by
item id (``metrics.order_by_scores``), except ``random``, a seeded shuffle.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from genre_agent.config import EmbedderConfig, StoreConfig
from genre_agent.eval.datasets import Dataset
from genre_agent.eval.metrics import order_by_scores
from genre_agent.eval.protocols import EvalCase, train_interactions, user_seed
from genre_agent.retrievers.base import RetrievalQuery, Retriever
from genre_agent.retrievers.bm25 import BM25Retriever
from genre_agent.retrievers.cf import ItemKNNRetriever
from genre_agent.retrievers.embedding import EmbeddingRetriever
from genre_agent.retrievers.fusion import FusionRetriever
from genre_agent.retrievers.popularity import PopularityRetriever
from genre_agent.types import Candidate

BaselineKind = Literal["random", "popularity", "bm25", "embedding", "itemknn", "fusion"]
ALL_BASELINES: tuple[BaselineKind, ...] = (
    "random",
    "popularity",
    "bm25",
    "embedding",
    "itemknn",
    "fusion",
)


class EmbeddingScorer:
    """The Chroma embedding retriever, plus candidate scoring by cosine to its query vector."""

    name = "embedding"

    def __init__(self, ds: Dataset, embedder_cfg: EmbedderConfig, history_len: int = 20) -> None:
        from genre_agent.embedders import get_embedder
        from genre_agent.storage.chroma import ChromaStore, make_client

        client = make_client(StoreConfig(kind="memory"))
        collection = "eval_" + ds.sha256[:16] + "_" + embedder_cfg.kind.replace("-", "_")
        self.store = ChromaStore(client, collection, get_embedder(embedder_cfg))
        self.store.upsert(ds.items.values())
        self.items = ds.items
        self.retriever = EmbeddingRetriever(self.store)
        self.history_len = history_len

    def _query(self, history_ids: Sequence[str]) -> RetrievalQuery:
        hist = [self.items[h] for h in history_ids if h in self.items][-self.history_len :]
        return RetrievalQuery(history=tuple(hist))

    def score(self, history_ids: Sequence[str], candidate_ids: Sequence[str]) -> list[float]:
        q = self.retriever.query_vector(self._query(history_ids))
        vecs = self.store.embeddings(list(candidate_ids))
        return [
            sum(a * b for a, b in zip(q, vecs[c], strict=True)) if c in vecs else -math.inf
            for c in candidate_ids
        ]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        return self.retriever.search(
            RetrievalQuery(
                history=query.history[-self.history_len :],
                text=query.text,
                exclude_ids=query.exclude_ids | {h.id for h in query.history},
            ),
            k,
        )


@dataclass
class BaselineSuite:
    """Fitted retrievers, built lazily; ``rank(name, case)`` orders a case's candidates."""

    ds: Dataset
    embedder: EmbedderConfig = field(default_factory=lambda: EmbedderConfig(kind="fake"))
    fusion_weights: dict[str, float] = field(
        default_factory=lambda: {"itemknn": 1.0, "bm25": 0.5, "popularity": 0.5}
    )
    seed: int = 0
    history_len: int = 20
    _cache: dict[str, Retriever] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train = train_interactions(self.ds)
        self.popularity: dict[str, int] = dict(Counter(r.item_id for r in self.train))

    def retriever(self, name: str) -> Retriever:
        if name not in self._cache:
            self._cache[name] = self._build(name)
        return self._cache[name]

    def _build(self, name: str) -> Retriever:
        items = self.ds.items
        builders: dict[str, Callable[[], Retriever]] = {
            "popularity": lambda: PopularityRetriever(items, self.popularity),
            "bm25": lambda: BM25Retriever(items, history_len=self.history_len),
            "itemknn": lambda: ItemKNNRetriever(items, self.train),
            "embedding": lambda: EmbeddingScorer(self.ds, self.embedder, self.history_len),
            "fusion": lambda: FusionRetriever(
                [self.retriever(n) for n in self.fusion_weights],
                list(self.fusion_weights.values()),
            ),
        }
        if name not in builders:
            raise KeyError(f"unknown baseline/retriever {name!r}; known: {sorted(builders)}")
        return builders[name]()

    def scores(self, name: str, case: EvalCase) -> dict[str, float]:
        r = self.retriever(name)
        vals = r.score(case.history, case.candidates)  # type: ignore[attr-defined]
        return dict(zip(case.candidates, vals, strict=True))

    def rank(self, name: str, case: EvalCase) -> list[str]:
        if name == "random":
            order = list(case.candidates)
            random.Random(user_seed(self.seed, case.user_id, "random")).shuffle(order)
            return order
        return order_by_scores(self.scores(name, case))

    def retrieve_fn(self, name: str) -> Callable[[Sequence[str], set[str], int], list[str]]:
        """For protocols: (history ids, excluded ids, n) -> the retriever's top-n ids."""
        r = self.retriever(name)

        def retrieve(history: Sequence[str], exclude: set[str], n: int) -> list[str]:
            hist = tuple(self.ds.items[h] for h in history if h in self.ds.items)
            q = RetrievalQuery(history=hist, exclude_ids=frozenset(exclude))
            return [c.item.id for c in r.search(q, n)]

        return retrieve
