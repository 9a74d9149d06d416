"""Evidence first, words second: why each candidate was recommended, computed without an LLM.

For every candidate of a request:

- **Supporting history.** Among the liked history items, the one most similar to the
  candidate by item-kNN co-occurrence (when the item-kNN model is available) and the one most
  similar by embedding (when the store holds both vectors), at most two distinct items. If
  neither signal links any history item, the history item sharing the most attributes.
- **Shared attributes.** The candidate's genres, tags and decade that those history items
  also have, each written as "genre Comedy", "tag space", "1980s".
- **Request.** Words of the request found in the candidate's data.
- **Signals.** The rank the candidate had in each candidate source.

The rationale prompt receives this evidence, the answer cites supporting items by id, and
``grounding_problems`` checks the sentence against it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from genre_agent.catalog.items import Item
from genre_agent.ranking.grounding import attributes, display_title
from genre_agent.types import Candidate, Evidence, Support

_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]{2,}")
_STOP = {
    "the", "and", "with", "for", "that", "this", "from", "like", "something", "some", "movie",
    "movies", "film", "films", "want", "about", "more", "less", "very", "not", "but", "any",
}  # fmt: skip


def _unit_rows(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), float64."""
    m = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.asarray(m / np.where(norms == 0.0, 1.0, norms))


def _request_words(query: str | None, item: Item) -> list[str]:
    if not query:
        return []
    data = f"{item.title} {item.text} {item.metadata.get('genres', '')}".lower()
    words = [w.lower() for w in _WORD_RE.findall(query) if w.lower() not in _STOP]
    return sorted({w for w in words if w in data})


def _add_support(picks: list[Support], h: Item, by: str, sim: float, shared: list[str]) -> None:
    """Add ``h`` as support found by ``by``; a second signal for the same item joins it."""
    for n, s in enumerate(picks):
        if s.id == h.id:
            picks[n] = s.model_copy(update={"by": [*s.by, by]})
            return
    title = display_title(h.title)
    picks.append(Support(id=h.id, title=title, by=[by], similarity=sim, shared=shared))


def build_evidence(
    candidates: Sequence[Candidate],
    liked: Sequence[Item],
    query: str | None,
    cf_pairs: Mapping[tuple[str, str], float] | None = None,
    vectors: Mapping[str, Sequence[float]] | None = None,
) -> list[Evidence]:
    """Evidence for each candidate (same order). ``cf_pairs[(history_id, item_id)]`` is the
    item-kNN similarity; ``vectors`` the stored embeddings by id."""
    liked = list({h.id: h for h in liked}.values())  # one entry per id
    hist_attrs = {h.id: attributes(h) for h in liked}
    # Cosine similarity of every candidate to every liked item, one matrix product.
    with_vec = [h for h in liked if vectors and h.id in vectors]
    cand_ids = [c.item.id for c in candidates if vectors and c.item.id in vectors]
    sims: dict[str, np.ndarray] = {}
    if vectors and with_vec and cand_ids:
        hist_m = _unit_rows([vectors[h.id] for h in with_vec])
        cand_m = _unit_rows([vectors[i] for i in cand_ids])
        sims = dict(zip(cand_ids, cand_m @ hist_m.T, strict=True))
    out = []
    for cand in candidates:
        item = cand.item
        attrs = attributes(item)
        picks: list[Support] = []

        def add(h: Item, by: str, sim: float) -> None:
            _add_support(picks, h, by, sim, sorted(attrs & hist_attrs[h.id]))  # noqa: B023

        if cf_pairs:
            best = max(liked, key=lambda h: cf_pairs.get((h.id, item.id), 0.0), default=None)
            if best is not None and cf_pairs.get((best.id, item.id), 0.0) > 0:
                add(best, "itemknn", round(cf_pairs[(best.id, item.id)], 4))
        if item.id in sims:
            row = sims[item.id]
            top = int(np.argmax(row))  # the first of equal maxima, like max()
            add(with_vec[top], "embedding", round(float(row[top]), 4))
        if not picks and liked:
            overlap, best = max(
                ((len(attrs & hist_attrs[h.id]), h) for h in liked), key=lambda t: t[0]
            )
            if overlap:
                add(best, "attributes", float(overlap))
        shared = sorted({a for s in picks for a in s.shared})
        out.append(
            Evidence(
                history=picks[:2],
                shared=shared,
                request=_request_words(query, item),
                signals=dict(cand.ranks) if cand.ranks else {cand.source: 0},
            )
        )
    return out
