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

import math
import re
from collections.abc import Mapping, Sequence

from genre_agent.catalog.items import Item
from genre_agent.ranking.grounding import attributes, display_title
from genre_agent.types import Candidate, Evidence, Support

_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]{2,}")
_STOP = {
    "the", "and", "with", "for", "that", "this", "from", "like", "something", "some", "movie",
    "movies", "film", "films", "want", "about", "more", "less", "very", "not", "but", "any",
}  # fmt: skip


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)


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
        if vectors and item.id in vectors:
            scored = [
                (_cosine(vectors[h.id], vectors[item.id]), h) for h in liked if h.id in vectors
            ]
            if scored:
                sim, best = max(scored, key=lambda t: t[0])
                add(best, "embedding", round(sim, 4))
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
