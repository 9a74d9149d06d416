"""The service facade: index, fit, and recommend through the stages (service/stages, run by
service/pipeline.py), which every door (these methods, HTTP, the harness) runs the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from genre_agent.catalog.items import Item, load_items
from genre_agent.config import Config, load_config
from genre_agent.embedders import Embedder, get_embedder
from genre_agent.llm.base import LLM
from genre_agent.llm.registry import get_engine
from genre_agent.ranking.learned import FeatureBuilder, LearnedModel
from genre_agent.service.learned_state import LearnedState
from genre_agent.service.pipeline import Pipeline
from genre_agent.service.requests import HistoryEntry, RecRequest
from genre_agent.service.sources import Announce, Sources
from genre_agent.service.stages.evidence import EvidenceStage
from genre_agent.service.stages.rank import RankStage, tiers
from genre_agent.service.stages.resolve import ProfileSource, Resolved, Resolver
from genre_agent.service.stages.retrieve import Gather, given, search
from genre_agent.storage.backends import open_interactions
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.chroma import ChromaStore, IndexReport
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate, Recommendation, StreamEvent
from retrievers.base import Retriever

__all__ = ["RecRequest", "Recommender"]


class Recommender:
    """``llm`` is built on first use (once per process); ``sources`` may carry models fitted
    elsewhere (the harness's), ``learned`` the learned ranker's model (else models/ranker/)."""

    def __init__(
        self,
        config: Config,
        store: ChromaStore,
        interactions: InteractionBackend,
        llm: LLM | None = None,
        sources: Sources | None = None,
        announce: Announce | None = None,
        learned: LearnedModel | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.interactions = interactions
        self._llm = llm
        self.announce = announce
        self.sources = sources or Sources(config, store, interactions, announce=announce)
        self.learned = LearnedState(config, store, interactions, self.sources, learned)
        profiles = ProfileSource(config, lambda: self.llm)
        resolver = Resolver(config, interactions, self.sources.lookup, store.ids_where, profiles)
        self.evidence = EvidenceStage(store, self.sources)
        ranks = RankStage(lambda: self.llm, self.learned.parts, tiers(interactions, self.sources))
        self.pipeline = Pipeline(resolver, self.sources, self.evidence, ranks, lambda: self.llm)

    @classmethod
    def from_config(
        cls,
        source: str | Path | Config | dict[str, Any] | None = None,
        *,
        llm: LLM | None = None,
        embedder: Embedder | None = None,
        announce: Announce | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Recommender:
        cfg = load_config(source, overrides=overrides)
        emb = embedder or get_embedder(cfg.embedder)
        store = ChromaStore.from_config(cfg.store, emb)
        return cls(cfg, store, open_interactions(cfg), llm=llm, announce=announce)

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            self._llm = get_engine(self.config.llm, announce=self.announce)
        return self._llm

    @property
    def retriever(self) -> Retriever:
        return self.sources.fusion()

    def index(
        self, items: Sequence[Item] | str | Path, progress: Callable[[int, int], None] | None = None
    ) -> IndexReport:
        """Upsert items (or a catalog file). A bad file raises before anything is written."""
        if isinstance(items, (str, Path)):
            items = load_items(items)
        report = self.store.upsert(items, progress=progress)
        self.sources.invalidate()
        return report

    def delete_items(self, ids: Sequence[str]) -> list[str]:
        """Unindex items (their interactions stay); return the ids that were indexed."""
        removed = self.store.delete(ids)
        self.sources.invalidate()
        return removed

    def add_interactions(self, rows: Sequence[Interaction]) -> int:
        """Store interactions. Popularity counts them at once; item-kNN after `genre fit`."""
        return self.interactions.add(rows)

    def fit(self, kinds: Sequence[str] | None = None) -> list[Any]:
        """``genre fit``: ``kinds``, else item-kNN and every active fitted source."""
        from genre_agent.service.fit import fit_source, kinds_to_fit

        todo = list(kinds) if kinds is not None else kinds_to_fit(self.config)
        catalog = self.sources.catalog()
        reports = [
            fit_source(self.config, k, catalog, self.interactions, self.announce) for k in todo
        ]
        self.sources.invalidate()
        return reports

    def recommend(
        self,
        user_id: str | None = None,
        history: Sequence[HistoryEntry] | None = None,
        query: str | None = None,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        profile: str | None = None,
        exclude: Sequence[str] = (),
    ) -> Recommendation:
        req = RecRequest(user_id, history, query, k, filters, profile, exclude)
        return self.recommend_many([req])[0]

    def recommend_many(self, requests: Sequence[RecRequest]) -> list[Recommendation]:
        """Retrieve from the catalog and rank, for many requests; the LLM sees one batch."""
        return self.pipeline.run(self.config, [self.resolve(r, self._search()) for r in requests])

    def recommend_stream(
        self,
        user_id: str | None = None,
        history: Sequence[HistoryEntry] | None = None,
        query: str | None = None,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        profile: str | None = None,
        exclude: Sequence[str] = (),
    ) -> Iterator[StreamEvent]:
        """``recommend``, streamed: the ranked list (with evidence, without rationales),
        then each rationale as its engine call returns, then the whole result."""
        req = RecRequest(user_id, history, query, k, filters, profile, exclude)
        yield from self.pipeline.stream(self.config, self.resolve(req, self._search()))

    def rank(
        self,
        candidates: Sequence[str | Item],
        *,
        user_id: str | None = None,
        history: Sequence[HistoryEntry] | None = None,
        query: str | None = None,
        profile: str | None = None,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
    ) -> Recommendation:
        """Order the caller's candidates (each scored by the fused sources; an LLM sees them
        in the order given). Unknown ids are an error; every candidate is kept (history
        items too: the caller chose them), except those ``filters`` rejects."""
        req = RecRequest(user_id, history, query, k, filters, profile)
        return self.rank_many([(candidates, req)])[0]

    def rank_many(
        self, jobs: Sequence[tuple[Sequence[str | Item], RecRequest]]
    ) -> list[Recommendation]:
        """``rank`` for many requests at once (one batched LLM call)."""
        prepared = [self.resolve(req, given(self.sources, c)) for c, req in jobs]
        return self.pipeline.run(self.config, prepared)

    def _search(self) -> Gather:
        return search(self.config.retrieval.n_candidates)

    def resolve(self, req: RecRequest, gather: Gather) -> Resolved:
        """The first stages of a request: resolved, cold rule applied, candidates gathered."""
        return self.pipeline.prepare(self.config, req, gather)

    def with_evidence(self, cands: list[Candidate], req: RecRequest) -> list[Candidate]:
        """``cands`` with the evidence the request's history gives them (no LLM)."""
        history = self.pipeline.resolver.resolve(req).history
        return self.evidence.for_candidates(cands, history, req.query)

    # -- the learned ranker (service/learned_state.py) -------------------------------------
    def learned_model(self) -> LearnedModel:
        """The learned ranker's model (``genre fit --ranker``); a clear error if none."""
        return self.learned.model()

    def reload_ranker(self) -> None:
        """Load the learned ranker's model again on the next request (after a refit)."""
        self.learned.reload()

    def feature_builder(self) -> FeatureBuilder:
        return self.learned.feature_builder()

    def close(self) -> None:
        self.interactions.close()
