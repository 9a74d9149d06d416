"""The service: index items, gather candidates from the configured sources, rank, explain.

One pipeline for every caller. ``recommend``/``recommend_many`` retrieve from the catalog;
``rank`` orders candidates the caller gives. Both build the request the same way
(``service.requests``), score with the same fused sources (``service.sources``) and rank
with the same ranker (``ranking.mode``). The evaluation harness calls these methods too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_agent.catalog.items import Item, load_items
from genre_agent.config import Config, load_config
from genre_agent.embedders import Embedder, get_embedder
from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM
from genre_agent.llm.faults import iter_in_threads
from genre_agent.llm.registry import get_engine
from genre_agent.ranking import RankRequest, make_ranker
from genre_agent.ranking.learned import (
    FeatureBuilder,
    FeatureRequest,
    ItemStats,
    LearnedModel,
    llm_scores,
    ranker_folder,
)
from genre_agent.ranking.popularity_hint import hint_candidates, popularity_tiers
from genre_agent.ranking.rationales import add_rationales
from genre_agent.retrievers.base import RetrievalQuery, Retriever
from genre_agent.retrievers.fusion import FusionRetriever
from genre_agent.service.evidence import build_evidence
from genre_agent.service.requests import (
    HistoryEntry,
    RecRequest,
    ResolvedHistory,
    check_k,
    resolve_history,
)
from genre_agent.service.sources import Sources
from genre_agent.storage.backends import exists as stores_exist
from genre_agent.storage.backends import open_interactions, open_profiles
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.chroma import ChromaStore, IndexReport
from genre_agent.storage.interactions import Interaction
from genre_agent.storage.models import snapshot
from genre_agent.types import (
    Candidate,
    RankedItem,
    Recommendation,
    StageTiming,
    StreamEvent,
    Trace,
)

Announce = Callable[[str], None]

__all__ = ["RecRequest", "Recommender"]


@dataclass
class _Prepared:
    req: RecRequest
    history: ResolvedHistory
    query: RetrievalQuery
    rerank_profile: str | None
    candidates: list[Candidate]
    k: int
    retrieve_s: float
    signals: dict[str, float]
    profile: str | None = None
    profile_used: tuple[str, ...] = ()
    # "popular": a cold request (no history, query or profile) got the popularity list.
    strategy: str = "personal"


# Why a cold request got the popularity list (Trace.notes).
COLD_NOTE = (
    "cold start: no history, query or profile, so these are the most popular items "
    "(popularity source; no LLM ranking, no rationales)"
)


# Gathers one request's candidates from its query and the fusion to use.
Gather = Callable[[RetrievalQuery, FusionRetriever], list[Candidate]]


def _signals(active: dict[Any, float]) -> dict[str, float]:
    return {str(k): w for k, w in active.items()}


def _used(query: RetrievalQuery, rerank_profile: str | None) -> tuple[str, ...]:
    """Where the profile went: "retrieval", "rerank", both or neither."""
    return tuple(
        name for name, on in (("retrieval", query.profile), ("rerank", rerank_profile)) if on
    )


class Recommender:
    """Catalog -> fused candidate sources -> ranker (LLM or not) -> rationales.

    ``llm`` is created lazily on the first call that needs it (and once per process).
    ``sources`` may carry models fitted elsewhere (the harness fits on its training split).
    """

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
        self._profiles: Any = None
        # ranking.mode = "learned": the model (loaded from models/ranker/ on first use unless
        # given, as the harness does) and the item statistics its features read.
        self._learned = learned
        # The published version the loaded ranker came from; False: given, not loaded.
        self._learned_token: str | None | bool = False if learned is not None else None
        self._stats: tuple[int, ItemStats] | None = None

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
        """The fused candidate sources that ``retrieval.sources`` names."""
        return self.sources.fusion()

    # -- indexing -------------------------------------------------------------------------
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
        """Remove items from the index (every source stops proposing them); return the ids
        that were indexed. Their interactions stay: a history may still name them."""
        removed = self.store.delete(ids)
        self.sources.invalidate()
        return removed

    def add_interactions(self, rows: Sequence[Interaction]) -> int:
        """Store interactions. Popularity counts them at once; item-kNN after `genre fit`."""
        return self.interactions.add(rows)

    def fit(self, kinds: Sequence[str] | None = None) -> list[Any]:
        """Fit the sources that learn from interactions (``genre fit``): ``kinds``, else
        item-kNN and every active fitted source (service.fit)."""
        from genre_agent.service.fit import fit_source, kinds_to_fit

        todo = list(kinds) if kinds is not None else kinds_to_fit(self.config)
        catalog = self.sources.catalog()
        reports = [
            fit_source(self.config, k, catalog, self.interactions, self.announce) for k in todo
        ]
        self.sources.invalidate()
        return reports

    # -- request building -------------------------------------------------------------------
    def _forgotten(self, user_id: str) -> set[str]:
        if not stores_exist(self.config, "profiles"):
            return set()
        store = open_profiles(self.config)
        try:
            return store.forgotten(user_id)
        finally:
            store.close()

    def _history(self, req: RecRequest) -> ResolvedHistory:
        entries: Sequence[HistoryEntry] = ()
        forgotten: set[str] = set()
        if req.history is not None:
            entries = req.history
        elif req.user_id is not None:
            entries = self.interactions.history(req.user_id)
            # Items the user asked to forget (genre profile forget) lose all influence.
            forgotten = self._forgotten(req.user_id)
        return resolve_history(self.config, entries, self.sources.lookup, req.exclude, forgotten)

    def _stored_profile(self, req: RecRequest, history: ResolvedHistory) -> str | None:
        """The user's stored (or newly built) profile when a profile switch is on; building
        one needs the LLM, and is reused while the history is unchanged."""
        p = self.config.profile
        if not (p.use_in_retrieval or p.use_in_rerank) or req.user_id is None:
            return None
        if not history.liked and not history.disliked:
            return None
        if self._profiles is None:
            from genre_agent.service.profiles import Profiles

            self._profiles = Profiles(self.llm, open_profiles(self.config), p)
        record = self._profiles.build(req.user_id, history.liked, history.disliked)
        return str(record.profile.as_text())

    def _prepare(
        self, req: RecRequest
    ) -> tuple[ResolvedHistory, RetrievalQuery, str | None, str | None, bool]:
        """The request's history, its retrieval query, the profile for the ranker and the
        profile it had, and whether it is cold (nothing to personalise from: it gets the
        popularity list)."""
        history = self._history(req)
        p = self.config.profile
        profile: str | None = req.profile
        both = req.profile_scope == "both" and profile is not None
        if profile is None:
            profile = self._stored_profile(req, history)
        use_ret = both or p.use_in_retrieval
        use_rank = both or p.use_in_rerank
        if profile and not use_ret and not history.items and not req.query:
            use_ret = True  # nothing else can seed retrieval
        cold = not history.items and not req.query and not (profile and use_ret)
        allowed = self.store.ids_where(req.filters) if req.filters else None
        query = RetrievalQuery(
            history=history.items,
            text=req.query,
            profile=profile if use_ret else None,
            where=req.filters or None,
            exclude_ids=history.exclude,
            allowed_ids=allowed,
            user_id=req.user_id,
        )
        return history, query, profile if use_rank else None, profile, cold

    # -- recommending -----------------------------------------------------------------------
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
        return self.recommend_many(
            [RecRequest(user_id, history, query, k, filters, profile, exclude)]
        )[0]

    def recommend_many(self, requests: Sequence[RecRequest]) -> list[Recommendation]:
        """Retrieve from the catalog and rank, for many requests; the LLM sees one batch."""
        n = self.config.retrieval.n_candidates
        return self._rank(
            [self._prepared(req, lambda q, fusion: fusion.search(q, n)) for req in requests]
        )

    def _prepared(self, req: RecRequest, candidates: Gather) -> _Prepared:
        """Resolve one request and gather its candidates (timed as the retrieve stage): from
        the configured fusion, or for a cold request from the popularity source alone."""
        t0 = time.perf_counter()
        k = check_k(req.k, self.config.ranking.k)
        history, query, rerank_profile, profile, cold = self._prepare(req)
        fusion = self.sources.popular() if cold else self.sources.fusion()
        cands = candidates(query, fusion)
        if self.config.ranking.mode not in ("retrieval", "learned"):
            # An LLM ranker may explain any candidate; the retrieval order explains only
            # what it returns, so _top_by_score computes evidence for those items alone.
            cands = self._with_evidence(cands, history, req.query)
        return _Prepared(
            req,
            history,
            query,
            rerank_profile,
            cands,
            k,
            time.perf_counter() - t0,
            {"popularity": 1.0} if cold else _signals(self.sources.active()),
            profile,
            _used(query, rerank_profile),
            "popular" if cold else "personal",
        )

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
        """``recommend``, streamed: first the ranked list (with evidence, without
        rationales), then each rationale as its engine call returns, then the whole result.

        Each of the top ``ranking.rationale_top_r`` items is explained by its own request,
        submitted at once from a thread pool: an engine that serves concurrent callers
        (the openai engine, or the in-process engine's owner thread) answers them as they
        finish. Listwise two_phase explains inside its ranker, so it streams nothing early.
        """
        cfg = self.config
        req = RecRequest(user_id, history, query, k, filters, profile, exclude)
        n = cfg.retrieval.n_candidates
        prepared = self._prepared(req, lambda q, fusion: fusion.search(q, n))
        ranked = self._rank([prepared], explain=False)[0]
        yield StreamEvent(kind="ranked", recommendation=ranked)
        top = ranked.items[: cfg.ranking.rationale_top_r] if ranked.items else []
        if cfg.ranking.mode == "listwise" or not top or prepared.strategy == "popular":
            yield StreamEvent(kind="done", recommendation=ranked)
            return
        rank_req = RankRequest(
            prepared.candidates, prepared.history.liked, req.query, prepared.rerank_profile, 1
        )
        trace = ranked.trace
        items = list(ranked.items)

        def explain(pos: int) -> tuple[int, RankedItem, Trace]:
            one: list[tuple[list[RankedItem], Trace]] = [([items[pos]], Trace(candidates=[]))]
            add_rationales(
                self.llm, cfg.ranking, [rank_req], one, 1, cfg.llm.temperature, cfg.llm.seed
            )
            return pos, one[0][0][0], one[0][1]

        # Daemon threads waited on in short slices: Ctrl-C stops a stream at once.
        for _, (pos, item, sub) in iter_in_threads(explain, list(range(len(top))), len(top)):
            items[pos] = item
            trace.llm_calls += sub.llm_calls
            trace.prompt_tokens += sub.prompt_tokens
            trace.completion_tokens += sub.completion_tokens
            trace.raw_outputs += sub.raw_outputs
            trace.rejected_entries += sub.rejected_entries
            trace.template, trace.template_sha256 = sub.template, sub.template_sha256
            yield StreamEvent(kind="rationale", item=item)
        trace.model_id, trace.model_revision = self.llm.model_id, self.llm.revision
        trace.engine = cfg.llm.engine
        yield StreamEvent(
            kind="done", recommendation=ranked.model_copy(update={"items": items, "trace": trace})
        )

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
        """Order the caller's candidates with the configured pipeline.

        Each candidate gets the fused score of the configured sources (as in ``recommend``),
        then the configured ranker orders them; an LLM sees them in the order given. Unknown
        ids are an error. Every candidate is kept (history items too: the caller chose
        them), except those ``filters`` rejects.
        """
        return self.rank_many(
            [(candidates, RecRequest(user_id, history, query, k, filters, profile))]
        )[0]

    def rank_many(
        self, jobs: Sequence[tuple[Sequence[str | Item], RecRequest]]
    ) -> list[Recommendation]:
        """``rank`` for many requests at once (one batched LLM call)."""

        def scored(cands_in: Sequence[str | Item]) -> Gather:
            def score(query: RetrievalQuery, fusion: FusionRetriever) -> list[Candidate]:
                items = self._candidate_items(cands_in)
                allowed = query.allowed_ids
                kept = [it for it in items if allowed is None or it.id in allowed]
                ranked = fusion.score_with_ranks(query, [it.id for it in kept]) if kept else []
                return [
                    Candidate(item=it, score=s, source=fusion.name, ranks=ranks)
                    for it, (s, ranks) in zip(kept, ranked, strict=True)
                ]

            return score

        return self._rank([self._prepared(req, scored(c)) for c, req in jobs])

    def _top_by_score(
        self, p: _Prepared, scores: Sequence[float] | None = None
    ) -> list[RankedItem]:
        """The top k candidates by ``scores`` (default: the retrieval score), ties broken by
        item id, with evidence (computed here for these items only when they carry none)."""
        given = scores if scores is not None else [c.score for c in p.candidates]
        pairs = sorted(zip(p.candidates, given, strict=True), key=lambda t: (-t[1], t[0].item.id))
        top = pairs[: p.k]
        order = [c for c, _ in top]
        if any(c.evidence is None for c in order):
            order = self._with_evidence(order, p.history, p.req.query)
        return [
            RankedItem(rank=i + 1, item=c.item, score=s, evidence=c.evidence)
            for i, (c, (_, s)) in enumerate(zip(order, top, strict=True))
        ]

    def _with_evidence(
        self, cands: list[Candidate], history: ResolvedHistory, query: str | None
    ) -> list[Candidate]:
        """Each candidate with its evidence (service/evidence.py): no LLM involved."""
        if not cands:
            return cands
        liked = history.liked
        knn = self.sources.cf_model()
        ids = [c.item.id for c in cands]
        pairs = knn.pair_similarity([h.id for h in liked], ids) if knn and liked else {}
        # Distinct ids: rank() keeps candidates that are in the history too.
        wanted = list(dict.fromkeys([h.id for h in liked] + ids))
        vectors = self.store.embeddings(wanted) if liked else {}
        evidence = build_evidence(cands, liked, query, pairs, vectors)
        return [c.model_copy(update={"evidence": e}) for c, e in zip(cands, evidence, strict=True)]

    def _candidate_items(self, cands: Sequence[str | Item]) -> list[Item]:
        ids = [c for c in cands if isinstance(c, str)]
        known = self.sources.lookup(ids) if ids else {}
        missing = [i for i in ids if i not in known]
        if missing:
            raise GenreError(f"candidates not in the index: {missing[:10]}")
        out = [c if isinstance(c, Item) else known[c] for c in cands]
        seen = [it.id for it in out]
        if len(set(seen)) != len(seen):
            raise GenreError("candidate ids are not distinct")
        return out

    def _rank(self, prepared: Sequence[_Prepared], explain: bool = True) -> list[Recommendation]:
        cfg = self.config
        if not explain:  # recommend_stream: rank now, explain item by item afterwards
            cfg = cfg.model_copy(
                update={"ranking": cfg.ranking.model_copy(update={"rationale_top_r": 0})}
            )
        # Cold requests keep the popularity order: no LLM ranks or explains them.
        warm = [p for p in prepared if p.strategy != "popular"]
        personal = iter(self._rank_personal(cfg, warm) if warm else [])
        results = [
            (self._top_by_score(p), Trace(candidates=p.candidates))
            if p.strategy == "popular"
            else next(personal)
            for p in prepared
        ]
        recs = []
        for p, (items, trace) in zip(prepared, results, strict=True):
            by_id = {c.item.id: c.evidence for c in p.candidates}
            items[:] = [
                it
                if it.evidence is not None
                else it.model_copy(update={"evidence": by_id.get(it.item.id)})
                for it in items
            ]
            trace.timings.insert(0, StageTiming(stage="retrieve", seconds=p.retrieve_s))
            trace.config_sha256 = cfg.fingerprint()
            trace.sources = dict(p.signals)
            trace.profile = p.profile or None
            trace.profile_used = list(p.profile_used)
            trace.strategy = p.strategy
            if p.strategy == "popular":
                trace.ranked_by = "popularity"
                trace.notes.append(COLD_NOTE)
            else:
                trace.ranked_by = (
                    cfg.ranking.mode
                    if cfg.ranking.mode in ("retrieval", "learned")
                    else f"llm:{cfg.ranking.mode}"
                )
            if len(items) < p.k:
                trace.notes.append(self._shortfall(p, len(items), len(trace.rejected_entries)))
            recs.append(Recommendation(user_id=p.req.user_id, items=items, trace=trace))
        return recs

    def _rank_personal(
        self, cfg: Config, prepared: Sequence[_Prepared]
    ) -> list[tuple[list[RankedItem], Trace]]:
        """The configured ranker's (items, trace) for each request, in order."""
        rank_reqs = [
            RankRequest(p.candidates, p.history.liked, p.req.query, p.rerank_profile, p.k)
            for p in prepared
        ]
        results: list[tuple[list[RankedItem], Trace]] = []
        if cfg.ranking.mode in ("retrieval", "learned"):
            if cfg.ranking.mode == "retrieval":
                for p in prepared:
                    results.append((self._top_by_score(p), Trace(candidates=p.candidates)))
            else:
                t0 = time.perf_counter()
                scored, names = self._learned_scores(prepared)
                learn_s = (time.perf_counter() - t0) / max(len(prepared), 1)
                for p, scores, used in zip(prepared, scored, names, strict=True):
                    trace = Trace(candidates=p.candidates, features=used)
                    trace.timings.append(StageTiming(stage="learned", seconds=learn_s))
                    results.append((self._top_by_score(p, scores), trace))
            if cfg.ranking.rationale_top_r > 0 and any(p.candidates for p in prepared):
                add_rationales(
                    self.llm,
                    cfg.ranking,
                    rank_reqs,
                    results,
                    cfg.ranking.rationale_top_r,
                    cfg.llm.temperature,
                    cfg.llm.seed,
                )
                for _, trace in results:
                    trace.model_id = self.llm.model_id
                    trace.model_revision = self.llm.revision
                    trace.engine = cfg.llm.engine
        else:
            ranker = make_ranker(self.llm, cfg.ranking)  # listwise two_phase always explains
            tiers = self._popularity_tiers() if cfg.ranking.popularity_hint else None
            todo = [
                RankRequest(
                    hint_candidates(r.candidates, tiers) if tiers is not None else r.candidates,
                    r.history,
                    r.query,
                    r.profile,
                    r.k,
                )
                for r in rank_reqs
            ]
            nonempty = [n for n, r in enumerate(todo) if r.candidates]
            ranked = ranker.rank_many(
                [todo[n] for n in nonempty], temperature=cfg.llm.temperature, seed=cfg.llm.seed
            )
            results = [([], Trace(candidates=[])) for _ in todo]
            for n, out in zip(nonempty, ranked, strict=True):
                results[n] = out
            for p, (items, trace) in zip(prepared, results, strict=True):
                plain = {c.item.id: c for c in p.candidates}
                # The hint is prompt text, not item data: give the items back. Listwise
                # answers have no score: the item shows its retrieval score.
                items[:] = [
                    it.model_copy(
                        update={
                            "item": plain[it.item.id].item,
                            "score": it.score if it.score is not None else plain[it.item.id].score,
                        }
                    )
                    for it in items
                ]
                trace.candidates = p.candidates
                trace.engine = cfg.llm.engine
        return results

    # -- ranking.mode = "learned" ---------------------------------------------------------------
    def learned_model(self) -> LearnedModel:
        """The learned ranker's model (``genre fit --ranker``); a clear error if none."""
        if self._learned is not None and self._learned_token is False:
            return self._learned  # given (the harness's): never reloaded
        final = ranker_folder(self.config)
        tok, found = snapshot(final)
        if self._learned is None or tok != self._learned_token:
            # A newer `genre fit --ranker`: load that version whole, then swap it in.
            folder = found or final
            model = LearnedModel.load(folder)
            model.check(self.config, folder)
            self._learned, self._learned_token = model, tok
        return self._learned

    def item_stats(self) -> ItemStats:
        """Popularity and recency of every item, recounted when the interactions change."""
        version = self.interactions.count()
        if self._stats is None or self._stats[0] != version:
            stats = ItemStats.build(self.interactions.all(), self.sources.catalog())
            self._stats = (version, stats)
        return self._stats[1]

    def feature_builder(self) -> FeatureBuilder:
        return FeatureBuilder(
            self.config, self.sources.get, self.store.embeddings, self.item_stats()
        )

    def feature_requests(self, prepared: Sequence[_Prepared]) -> list[FeatureRequest]:
        return [
            FeatureRequest(
                p.query,
                p.history.liked,
                len(p.history.items) - len(p.history.disliked),
                [c.item for c in p.candidates],
                p.req.query,
                p.rerank_profile,
                self._user_ts(p.req),
            )
            for p in prepared
        ]

    def _user_ts(self, req: RecRequest) -> float | None:
        """When the request's latest history interaction happened: from the rows passed in,
        else the user's stored interactions (None: no timestamps)."""
        rows: Sequence[Any] = (
            req.history
            if req.history is not None
            else self.interactions.history(req.user_id)
            if req.user_id is not None
            else ()
        )
        times = [r.timestamp for r in rows if isinstance(r, Interaction) and r.timestamp]
        return max(times) if times else None

    def _learned_scores(
        self, prepared: Sequence[_Prepared]
    ) -> tuple[list[list[float]], list[list[str]]]:
        """Each candidate's learned-ranker score, and the features used per request. The LLM
        is called (one batched scoring call) only for requests whose history bucket has
        ranking.learned.llm_feature on."""
        model = self.learned_model()
        builder = self.feature_builder()
        reqs = self.feature_requests(prepared)
        ask = [n for n, r in enumerate(reqs) if r.candidates and builder.llm_on(r.n_liked)]
        by_req: dict[int, list[float]] = {}
        if ask and builder.names[-1:] == ["llm.score"]:
            got = llm_scores(
                self.llm, self.config.ranking, [reqs[n] for n in ask], self.config.llm.seed
            )
            by_req = dict(zip(ask, got, strict=True))
        scores, names = [], []
        for n, r in enumerate(reqs):
            x = builder.matrix(r, by_req.get(n))
            scores.append([float(v) for v in model.scores(x)])
            names.append(builder.request_names(r.n_liked))
        return scores, names

    def _shortfall(self, p: _Prepared, got: int, rejected: int) -> str:
        """Why fewer items than asked came back, in one line."""
        cands = len(p.candidates)
        shown = json.dumps(p.req.filters, ensure_ascii=False) if p.req.filters else ""
        if cands >= p.k:
            why = f"the ranker returned {got} valid items from {cands} candidates"
            why += f" ({rejected} rejected entries)" if rejected else ""
        elif p.req.filters and cands == 0:
            why = f"no item matched the filter {shown}"
        elif p.req.filters:
            why = f"only {cands} candidates matched the filter {shown}"
        elif cands >= self.config.retrieval.n_candidates:
            why = f"retrieval.n_candidates is {self.config.retrieval.n_candidates}"
        else:
            why = f"only {cands} candidates are left once the user's history is excluded"
        return f"{got} of {p.k} asked: {why}"

    def _popularity_tiers(self) -> dict[str, str]:
        """Tiers from the interaction store's counts over the indexed catalog."""
        counts = self.interactions.item_counts()
        return popularity_tiers(counts, max(len(self.sources.catalog()), len(counts)))

    def close(self) -> None:
        self.interactions.close()
