"""Stage 4, evidence: why each item fits the request, from the catalog and the fitted
item-kNN (service/evidence.py); no LLM. Attached once: to every candidate before ranking
when the ranker declares ``evidence_first`` (an LLM may pick and explain any of them),
else to the ranked top k only."""

from __future__ import annotations

from collections.abc import Sequence

from genre_agent.service.evidence import build_evidence
from genre_agent.service.requests import ResolvedHistory
from genre_agent.service.sources import Sources
from genre_agent.service.stages.resolve import Resolved
from genre_agent.storage.chroma import ChromaStore
from genre_agent.types import Candidate, RankedItem


class EvidenceStage:
    def __init__(self, store: ChromaStore, sources: Sources) -> None:
        self.store = store
        self.sources = sources

    def for_candidates(
        self, cands: list[Candidate], history: ResolvedHistory, query: str | None
    ) -> list[Candidate]:
        """Each candidate with its evidence."""
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

    def before_rank(self, job: Resolved) -> None:
        job.candidates = self.for_candidates(job.candidates, job.history, job.req.query)

    def after_rank(self, job: Resolved, items: Sequence[RankedItem]) -> list[RankedItem]:
        """The ranked items with evidence: their candidate's, else computed for the ranked
        items alone (when the candidates carry none)."""
        by_id = {c.item.id: c for c in job.candidates}
        out = [
            it
            if it.evidence is not None
            else it.model_copy(update={"evidence": by_id[it.item.id].evidence})
            for it in items
        ]
        if all(it.evidence is not None for it in out):
            return out
        cands = self.for_candidates([by_id[it.item.id] for it in out], job.history, job.req.query)
        return [
            it.model_copy(update={"evidence": c.evidence}) for it, c in zip(out, cands, strict=True)
        ]
