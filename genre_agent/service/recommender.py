"""The service: index items, gather candidates, rerank with the LLM, return typed results."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_agent.catalog.items import Item, load_items
from genre_agent.config import Config, load_config
from genre_agent.embedders import Embedder, get_embedder
from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM
from genre_agent.llm.registry import get_engine
from genre_agent.ranking import RankRequest, make_ranker
from genre_agent.ranking.popularity_hint import hint_candidates, popularity_tiers
from genre_agent.retrievers.base import RetrievalQuery, Retriever
from genre_agent.retrievers.embedding import EmbeddingRetriever
from genre_agent.storage.chroma import ChromaStore, IndexReport
from genre_agent.storage.interactions import Interaction, InteractionStore
from genre_agent.types import RankedItem, Recommendation, StageTiming

Announce = Callable[[str], None]


@dataclass
class RecRequest:
    """One ``recommend`` call's arguments (for batches)."""

    user_id: str | None = None
    history: Sequence[str | Item] | None = None
    query: str | None = None
    k: int | None = None
    filters: dict[str, Any] | None = None
    profile: str | None = None
    exclude: Sequence[str] = ()


class Recommender:
    """Catalog -> Chroma candidates -> LLM rerank with rationales.

    ``llm`` is created lazily on the first call that needs it (and once per process).
    """

    def __init__(
        self,
        config: Config,
        store: ChromaStore,
        interactions: InteractionStore,
        llm: LLM | None = None,
        retriever: Retriever | None = None,
        announce: Announce | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.interactions = interactions
        self._llm = llm
        self.retriever = retriever or EmbeddingRetriever(store)
        self.announce = announce

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
        ipath = cfg.store.interactions_path if cfg.store.kind != "memory" else ":memory:"
        return cls(cfg, store, InteractionStore(ipath), llm=llm, announce=announce)

    def _forgotten(self, user_id: str) -> set[str]:
        path = self.config.profile.path
        if not Path(path).exists():
            return set()
        from genre_agent.storage.profiles import ProfileStore

        store = ProfileStore(path)
        try:
            return store.forgotten(user_id)
        finally:
            store.close()

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            self._llm = get_engine(self.config.llm, announce=self.announce)
        return self._llm

    # -- indexing -------------------------------------------------------------------------
    def index(
        self, items: Sequence[Item] | str | Path, progress: Callable[[int, int], None] | None = None
    ) -> IndexReport:
        """Upsert items (or a catalog file). A bad file raises before anything is written."""
        if isinstance(items, (str, Path)):
            items = load_items(items)
        return self.store.upsert(items, progress=progress)

    def add_interactions(self, rows: Sequence[Interaction]) -> int:
        return self.interactions.add(rows)

    # -- recommending ---------------------------------------------------------------------
    def _resolve_history(self, req: RecRequest) -> tuple[list[Item], set[str]]:
        """(liked history shown to the model, every interacted id to exclude)."""
        cfg = self.config.retrieval
        ids: list[str] = []
        liked: list[str] = []
        inline: dict[str, Item] = {}
        if req.history is not None:
            for h in req.history:
                if isinstance(h, Item):
                    inline[h.id] = h
                    ids.append(h.id)
                else:
                    ids.append(str(h))
            liked = list(ids)
        elif req.user_id is not None:
            rows = self.interactions.history(req.user_id)
            ids = [r.item_id for r in rows]
            # Items the user asked to forget (genre profile forget) lose all influence: they
            # are neither shown to the model nor used for the retrieval query.
            gone = self._forgotten(req.user_id)
            rows = [r for r in rows if r.item_id not in gone]
            liked = [
                r.item_id for r in rows if r.rating is None or r.rating >= cfg.min_liked_rating
            ] or [r.item_id for r in rows]
        known = self.store.get([i for i in liked if i not in inline])
        known.update(inline)
        unknown = [i for i in liked if i not in known]
        if unknown and not known:
            raise GenreError(f"history items not in the index: {unknown[:10]}")
        shown = [known[i] for i in liked if i in known]
        if cfg.history_len:
            shown = shown[-cfg.history_len :]
        else:
            shown = []
        exclude = set(ids) | set(req.exclude) if cfg.exclude_history else set(req.exclude)
        return shown, exclude

    def recommend(
        self,
        user_id: str | None = None,
        history: Sequence[str | Item] | None = None,
        query: str | None = None,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        profile: str | None = None,
        exclude: Sequence[str] = (),
    ) -> Recommendation:
        return self.recommend_many(
            [RecRequest(user_id, history, query, k, filters, profile, exclude)]
        )[0]

    def recommend_many(self, requests: Sequence[RecRequest]) -> list[Recommendation]:
        """Many requests; the LLM sees them as one batch (vLLM batches them)."""
        cfg = self.config
        prepared = []
        for req in requests:
            t0 = time.perf_counter()
            history, exclude = self._resolve_history(req)
            if not history and not req.query and not req.profile:
                raise GenreError(
                    f"user {req.user_id!r} has no known history: pass history=, query= or profile="
                )
            query = RetrievalQuery(
                history=tuple(history),
                text=req.query,
                profile=req.profile,
                where=req.filters,
                exclude_ids=frozenset(exclude),
            )
            cands = self.retriever.search(query, cfg.retrieval.n_candidates)
            t_ret = time.perf_counter() - t0
            k = req.k or cfg.ranking.k
            prepared.append((req, history, cands, k, t_ret))
        results: list[Recommendation] = []
        if cfg.ranking.mode == "retrieval":
            for req, _, cands, k, t_ret in prepared:
                from genre_agent.types import Trace

                items = [
                    RankedItem(rank=i + 1, item=c.item, score=c.score)
                    for i, c in enumerate(cands[:k])
                ]
                trace = Trace(
                    candidates=cands, timings=[StageTiming(stage="retrieve", seconds=t_ret)]
                )
                results.append(Recommendation(user_id=req.user_id, items=items, trace=trace))
            return results
        ranker = make_ranker(self.llm, cfg.ranking)
        tiers = self._popularity_tiers() if cfg.ranking.popularity_hint else None
        todo = [
            RankRequest(
                hint_candidates(cands, tiers) if tiers is not None else cands,
                history,
                req.query,
                req.profile,
                k,
            )
            for req, history, cands, k, _ in prepared
        ]
        ranked = ranker.rank_many(todo, temperature=cfg.llm.temperature, seed=cfg.llm.seed)
        for (req, _, cands, _, t_ret), (items, trace) in zip(prepared, ranked, strict=True):
            if tiers is not None:  # the hint is prompt text, not item data: give items back
                plain = {c.item.id: c.item for c in cands}
                items = [it.model_copy(update={"item": plain[it.item.id]}) for it in items]
            # Rankers that score (mode "scoring") keep their fused score; listwise generation
            # has none, so the item shows its retrieval score.
            scores = {c.item.id: c.score for c in trace.candidates}
            items = [
                it
                if it.score is not None
                else it.model_copy(update={"score": scores.get(it.item.id)})
                for it in items
            ]
            trace.timings.insert(0, StageTiming(stage="retrieve", seconds=t_ret))
            trace.engine = cfg.llm.engine
            trace.config_sha256 = cfg.fingerprint()
            results.append(Recommendation(user_id=req.user_id, items=items, trace=trace))
        return results

    def _popularity_tiers(self) -> dict[str, str]:
        """Tiers from the interaction store's counts over the indexed catalog."""
        counts = self.interactions.item_counts()
        return popularity_tiers(counts, max(self.store.count(), len(counts)))

    def close(self) -> None:
        self.interactions.close()
