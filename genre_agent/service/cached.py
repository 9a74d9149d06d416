"""Cached answers: a stored user's recommendation kept per user, models and request.

Only the fast path is cached: a stored user (``user_id``, no given history, no query, no
profile) on a config that calls no LLM, whose answer is personal (not a cold start).
Anything else is answered as usual, with ``trace.cache = "bypass"``. The first such
request computes the user's top ``service.cache_top_n`` and stores it (``"miss"``); a later
one with ``k`` at most the items kept takes the first ``k`` (``"hit"``). The key
(genre_agent.storage.cache) names:

- the versions of the fitted models serving reads (a refit makes old entries unreachable),
- the fingerprint of the config sections that shape an answer (``RANKING_SECTIONS``),
- the request's filters and exclusions. They are part of the key rather than applied to
  one cached list: a fused list (RRF over each source's ranks within the filtered
  catalog) filtered afterwards is not the list the filtered request gets.

The user's own feedback deletes their entries (``invalidate``). Popularity counts every
user's new interactions at once; a cached answer does not, until it expires
(``service.cache_ttl_s``) or the user sends feedback.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from genre_agent.catalog.items import Item
from genre_agent.config import Config
from genre_agent.ranking import needs, needs_llm
from genre_agent.ranking.learned import ranker_folder
from genre_agent.service.fit import kinds_to_fit, model_token
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import HistoryEntry, check_k
from genre_agent.storage.cache import RecommendationCache
from genre_agent.storage.models import token
from genre_agent.types import Recommendation, StageTiming

# The config sections an answer depends on. The others (service, queue, fit, chat, tune,
# enrich) do not change a ranking, so `genre worker` (another --every, another port) warms
# the entries `genre serve` reads.
RANKING_SECTIONS = ("llm", "store", "embedder", "retrieval", "ranking", "profile", "cold")


def ranking_fingerprint(cfg: Config) -> str:
    """A digest of the config sections that shape an answer."""
    return _digest(cfg.model_dump(mode="json", include=set(RANKING_SECTIONS)))


def _digest(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _shortfall_prefix(rec: Recommendation, k: int) -> str:
    """The start of the note finish() adds when fewer than ``k`` items came back."""
    return f"{len(rec.items)} of {k} asked:"


class CachedAnswers:
    """``recommend`` through a RecommendationCache (see the module doc)."""

    def __init__(self, rec: Recommender, cache: RecommendationCache, top_n: int) -> None:
        self.rec = rec
        self.cache = cache
        self.top_n = top_n

    def published(self) -> dict[str, str | None]:
        """The published version of every fitted model an answer reads (one readlink each)."""
        cfg = self.rec.config
        tokens = {kind: model_token(cfg, kind) for kind in kinds_to_fit(cfg)}
        if needs(cfg).learned_model:
            tokens["ranker"] = token(ranker_folder(cfg))
        return tokens

    def reloading(self, published: dict[str, str | None]) -> bool:
        """Whether a loaded model is older than its published version. A request may then
        be answered by the older model (while another request loads the new one), so its
        answer must not be stored under the new versions' key."""
        loaded: dict[str, str | None] = self.rec.sources.versions()
        if "ranker" in published and self.rec.learned.version() is not None:
            loaded["ranker"] = self.rec.learned.version()
        return any(kind in loaded and loaded[kind] != tok for kind, tok in published.items())

    def key(
        self,
        filters: dict[str, Any] | None,
        exclude: Sequence[str],
        published: dict[str, str | None] | None = None,
    ) -> str:
        request = {"filters": filters or None, "exclude": sorted(set(exclude))}
        fingerprint = ranking_fingerprint(self.rec.config)
        models = _digest(self.published() if published is None else published)
        return f"{models}:{fingerprint}:{_digest(request)}"

    def cacheable(
        self, user_id: str | None, history: Any, query: str | None, profile: str | None
    ) -> bool:
        return (
            user_id is not None
            and history is None
            and not query
            and profile is None
            and not needs_llm(self.rec.config)
        )

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
        args: dict[str, Any] = dict(
            user_id=user_id, history=history, query=query, k=k, filters=filters, exclude=exclude
        )
        if not self.cache.enabled:
            return self.rec.recommend(profile=profile, **args)
        if not self.cacheable(user_id, history, query, profile):
            return _marked(self.rec.recommend(profile=profile, **args), "bypass")
        assert user_id is not None
        want = check_k(k, self.rec.config.ranking.k)
        t0 = time.perf_counter()
        published = self.published()
        key = self.key(filters, exclude, published)
        raw = self.cache.get(user_id, key)
        note = None
        kept = None if raw is None else unpack(raw, self.rec.sources.lookup)
        if kept is not None and len(kept.items) >= want:
            return _hit(kept, want, time.perf_counter() - t0)
        if kept is not None:
            note = f"cache: the cached list has {len(kept.items)} items, fewer than k = {want}"
        out = self.fill(user_id, key, want, filters, exclude, store=not self.reloading(published))
        if note is not None:
            out.trace.notes.append(note)
        return out

    def fill(
        self,
        user_id: str,
        key: str,
        want: int,
        filters: dict[str, Any] | None,
        exclude: Sequence[str],
        store: bool = True,
    ) -> Recommendation:
        """Compute the user's top ``max(k, top_n)``, store it (unless ``store`` is false: a
        model is being reloaded), answer its first ``want``."""
        n = max(want, self.top_n)
        full = self.rec.recommend(user_id=user_id, k=n, filters=filters, exclude=exclude)
        if full.trace.strategy != "personal":
            # A cold answer (no usable history: popularity) is cheap, and storing one per
            # made-up user id would let anyone fill the cache.
            again = self.rec.recommend(user_id=user_id, k=want, filters=filters, exclude=exclude)
            return _marked(again, "bypass")
        stored = _without_shortfall(full, n)
        if store:
            self.cache.put(user_id, key, pack(stored))
        if len(stored.items) >= want:
            return _marked(_first(stored, want), "miss")
        # Fewer than k exist: the answer's own shortfall note names this k.
        again = self.rec.recommend(user_id=user_id, k=want, filters=filters, exclude=exclude)
        return _marked(again, "miss")

    def warm(self, user_ids: Sequence[str]) -> int:
        """Compute and store the default answer (no filters) of each user; how many."""
        for user_id in user_ids:
            published = self.published()
            store = not self.reloading(published)
            key = self.key(None, (), published)
            self.fill(user_id, key, self.rec.config.ranking.k, None, (), store=store)
        return len(user_ids)

    def invalidate(self, user_ids: Sequence[str]) -> None:
        """Delete the entries of these users (their feedback changed their history)."""
        for user_id in dict.fromkeys(user_ids):
            self.cache.invalidate_user(user_id)


def pack(rec: Recommendation) -> str:
    """``rec`` as JSON with each item (ranked and candidate) by its id; the catalog holds
    the rest (scores, ranks and evidence stay)."""
    data = rec.model_dump(mode="json")
    for entry in [*data["items"], *data["trace"]["candidates"]]:
        entry["item"] = entry["item"]["id"]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def unpack(
    raw: str, lookup: Callable[[Sequence[str]], Mapping[str, Item]]
) -> Recommendation | None:
    """A packed answer with its items from the catalog; None when one left the catalog."""
    data = json.loads(raw)
    entries = [*data["items"], *data["trace"]["candidates"]]
    found = lookup(list(dict.fromkeys(e["item"] for e in entries)))
    if any(e["item"] not in found for e in entries):
        return None
    for entry in entries:
        entry["item"] = found[entry["item"]]
    return Recommendation.model_validate(data)


def _first(rec: Recommendation, k: int) -> Recommendation:
    return rec.model_copy(update={"items": rec.items[:k]})


def _without_shortfall(rec: Recommendation, k: int) -> Recommendation:
    """``rec`` without the shortfall note of ``k`` (a shorter k has no shortfall)."""
    prefix = _shortfall_prefix(rec, k)
    if len(rec.items) >= k:
        return rec
    trace = rec.trace.model_copy(
        update={"notes": [n for n in rec.trace.notes if not n.startswith(prefix)]}
    )
    return rec.model_copy(update={"trace": trace})


def _marked(rec: Recommendation, state: Literal["miss", "bypass"]) -> Recommendation:
    trace = rec.trace.model_copy(update={"cache": state})
    return rec.model_copy(update={"trace": trace})


def _hit(kept: Recommendation, k: int, seconds: float) -> Recommendation:
    timings = [StageTiming(stage="cache", seconds=seconds)]
    trace = kept.trace.model_copy(update={"cache": "hit", "timings": timings})
    return kept.model_copy(update={"items": kept.items[:k], "trace": trace})
