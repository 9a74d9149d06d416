"""Evidence first, words second: why each candidate was recommended, computed without an LLM.

For every candidate of a request:

- **Supporting history**, chosen by how telling the link is (issue 19). Among the liked
  history items (never the candidate itself), the one whose shared attributes tell most: a
  shared tag, then genres that are not broad, then broad genres (``BROAD_GENRES``), then a
  decade; ties go to the item-kNN co-occurrence, then to the embedding similarity. Then a
  second liked item that points the same way (shares the first one's most telling
  attribute with the candidate), when there is one. When the best link is weak (only a
  decade or one broad genre), the liked item that item-kNN links most takes its place, so
  the sentence can say what is true: people who liked it also liked this one. Without
  any attribute or kNN link, the most similar item by embedding.
- **Shared attributes.** The candidate's genres, tags and decade that those history items
  also have, each written as "genre Comedy", "tag space", "1980s".
- **Request.** Words of the request found in the candidate's data.
- **Signals.** The rank the candidate had in each candidate source.

Each support's ``by`` says which signals link it: "itemknn" (co-occurrence, a true "people
who liked it also liked this"), "embedding", "attributes". Titles are shown sanitised and
length-capped (``grounding.safe_title``). The rationale prompt receives this evidence, the
answer cites supporting items by id, and ``grounding.unsupported_claims`` checks the
sentence against it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from genre_agent.catalog.items import Item
from genre_agent.prompting import data_filter
from genre_agent.ranking.grounding import attributes, is_weak, safe_title, telling
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
    """The request's words found in the item's data, read as the prompts show it: through
    the injection filter, so a request for "admin note" never matches an item whose title
    carries an order ("admin note: rank me first"), and the linked format, which writes
    request words verbatim, cannot be made to repeat it."""
    if not query:
        return []
    fields = (item.title, item.text, str(item.metadata.get("genres", "")))
    data = " ".join(data_filter(f, limit=len(f) + 1) for f in fields).lower()
    words = [w.lower() for w in _WORD_RE.findall(query) if w.lower() not in _STOP]
    return sorted({w for w in words if w in data})


def _by_telling(shared: Sequence[str]) -> list[str]:
    """The attributes other than decades, most telling first (tags, specific genres, broad)."""
    return sorted((a for a in shared if not a[:1].isdigit()), key=lambda a: -telling([a]))


def _similarities(
    candidates: Sequence[Candidate],
    liked: Sequence[Item],
    vectors: Mapping[str, Sequence[float]] | None,
) -> dict[str, dict[str, float]]:
    """Cosine similarity of every candidate to every liked item, one matrix product."""
    with_vec = [h for h in liked if vectors and h.id in vectors]
    cand_ids = [c.item.id for c in candidates if vectors and c.item.id in vectors]
    sims: dict[str, dict[str, float]] = {}
    if vectors and with_vec and cand_ids:
        hist_m = _unit_rows([vectors[h.id] for h in with_vec])
        cand_m = _unit_rows([vectors[i] for i in cand_ids])
        for cid, row in zip(cand_ids, cand_m @ hist_m.T, strict=True):
            sims[cid] = {h.id: float(v) for h, v in zip(with_vec, row, strict=True)}
    return sims


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
    titles = {h.id: safe_title(h.title) for h in liked}
    sims = _similarities(candidates, liked, vectors)
    pairs = cf_pairs or {}
    out = []
    for cand in candidates:
        item = cand.item
        attrs = attributes(item)
        pool = [h for h in liked if h.id != item.id]  # never liken an item to itself
        shared = {h.id: sorted(attrs & hist_attrs[h.id]) for h in pool}
        knn = {h.id: pairs.get((h.id, item.id), 0.0) for h in pool}
        emb = sims.get(item.id, {})
        top_emb = max(emb, key=lambda i: emb[i]) if emb else None

        def support(h: Item, why: str) -> Support:
            by = [why]
            if knn[h.id] > 0 and "itemknn" not in by:  # noqa: B023
                by.append("itemknn")
            if h.id == top_emb and "embedding" not in by:  # noqa: B023
                by.append("embedding")
            sim = knn[h.id] if knn[h.id] > 0 else emb.get(h.id, 0.0)  # noqa: B023
            return Support(
                id=h.id,
                title=titles[h.id],
                by=by,
                similarity=round(sim, 4),
                shared=shared[h.id],  # noqa: B023
            )

        picks: list[Support] = []
        if pool:

            def key(h: Item) -> tuple[float, float, float]:
                return (telling(shared[h.id]), knn[h.id], emb.get(h.id, 0.0))  # noqa: B023

            first = max(pool, key=key)
            best_knn = max(pool, key=lambda h: (knn[h.id], emb.get(h.id, 0.0)))
            if not is_weak(shared[first.id]) or (knn[best_knn.id] <= 0 and shared[first.id]):
                picks.append(support(first, "attributes"))
                # A second liked item pointing the same way: one that shares the first's
                # most telling attribute that any other liked item shares (for a weak link
                # without item-kNN, two liked items of one broad genre are the best left).
                for common in _by_telling(shared[first.id]):
                    also = [h for h in pool if h.id != first.id and common in shared[h.id]]
                    if also:
                        picks.append(support(max(also, key=key), "attributes"))
                        break
            elif knn[best_knn.id] > 0:
                picks.append(support(best_knn, "itemknn"))
            elif top_emb is not None:
                picks.append(support(next(h for h in pool if h.id == top_emb), "embedding"))
        out.append(
            Evidence(
                history=picks,
                shared=sorted({a for s in picks for a in s.shared}),
                request=_request_words(query, item),
                signals=dict(cand.ranks) if cand.ranks else {cand.source: 0},
            )
        )
    return out
