"""``ranking.mode = "learned"``: a LightGBM lambdarank model over per-candidate features.

The candidates still come from the fused sources; this module only orders them. For each
candidate of a request it computes (names as in ``Trace.features``):

* ``src.<kind>.score`` / ``src.<kind>.rank``: every feature source's score for the candidate
  (``Retriever.score``) and its rank within the list as a fraction (0 = first, 1 = last).
  The sources are ``ranking.learned.feature_sources`` (default: the active
  ``retrieval.sources`` plus popularity), so any source kind becomes a feature by config.
* ``pop.log_count``: log(1 + interactions with the item).
* ``recency.last_years`` / ``recency.median_years``: how long before the newest stored
  interaction the item was last / typically interacted with (years; missing: no
  interaction). ``recency.year_gap``: newest catalog year minus the item's year.
* ``time.first_after_user`` / ``time.median_after_user`` / ``time.last_after_user``: the
  item's first / median / last interaction time minus the user's latest history interaction
  (years; missing without timestamps), and ``time.pop_near_user``: log(1 + the item's
  interactions within half a year of it). ``meta.year_vs_history``: the item's year minus
  the liked history's mean year.
* ``meta.genre_jaccard``, ``meta.genre_affinity`` (mean share of the liked history having
  each of the item's genres), ``meta.tag_overlap`` (the item's tags found in the history).
* ``emb.mean_cos`` / ``emb.max_cos``: cosine of the item's stored vector with the liked
  history items' vectors.
* ``hist.liked`` / ``hist.items``: the history's length (liked items, all items).
* ``llm.score`` (only when ``ranking.learned.llm_feature`` is on for the request's history
  bucket): the scoring mode's label score (genre_agent.ranking.scoring); missing elsewhere.

The model is trained by ``genre fit --ranker`` (genre_agent.service.learn) and saved under
``models/ranker/`` with its feature list and provenance.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_agent.catalog.items import Item
from genre_agent.config import Config, HistoryBucket, RankingConfig, SourceKind
from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM
from genre_agent.ranking.base import RankRequest
from genre_agent.ranking.grounding import attributes
from genre_agent.ranking.scoring import ScoringRanker
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, Retriever
from retrievers.fusion import ranks_of

MODEL_FILE = "ranker.txt"
META_FILE = "ranker.json"
LLM_FEATURE = "llm.score"
_YEAR_S = 365.25 * 86400.0
# time.pop_near_user counts an item's interactions within this many seconds of the user's
# latest one (half a year either side).
NEAR_S = _YEAR_S / 2

BASE_FEATURES = (
    "pop.log_count",
    "recency.last_years",
    "recency.median_years",
    "recency.year_gap",
    "time.first_after_user",
    "time.median_after_user",
    "time.last_after_user",
    "time.pop_near_user",
    "meta.year_vs_history",
    "meta.genre_jaccard",
    "meta.genre_affinity",
    "meta.tag_overlap",
    "emb.mean_cos",
    "emb.max_cos",
    "hist.liked",
    "hist.items",
)


class LearnedRankerError(GenreError):
    """The learned ranker has no usable model, or cannot be trained as asked."""


def history_bucket(n_liked: int) -> HistoryBucket:
    """cold: <= 5 liked items; short: 6-20; long: > 20."""
    if n_liked <= 5:
        return "cold"
    return "short" if n_liked <= 20 else "long"


def feature_sources(cfg: Config) -> list[SourceKind]:
    """The source kinds whose scores are features (``ranking.learned.feature_sources``, else
    the active ``retrieval.sources`` plus popularity)."""
    chosen = cfg.ranking.learned.feature_sources
    if chosen is not None:
        return list(dict.fromkeys(chosen))
    active = [k for k, w in cfg.retrieval.sources.items() if w > 0]
    pop: SourceKind = "popularity"
    return list(dict.fromkeys([*active, pop]))


def uses_llm(cfg: Config) -> bool:
    """Whether any history bucket turns the LLM feature on."""
    return any(cfg.ranking.learned.llm_feature.values())


def feature_names(cfg: Config) -> list[str]:
    """Every feature the model of ``cfg`` takes, in column order."""
    names = [f"src.{k}.{what}" for k in feature_sources(cfg) for what in ("score", "rank")]
    names += list(BASE_FEATURES)
    if uses_llm(cfg):
        names.append(LLM_FEATURE)
    return names


@dataclass(frozen=True)
class ItemStats:
    """Catalog-level statistics of the interactions the ranker may see."""

    counts: Mapping[str, int]
    last_ts: Mapping[str, float]
    median_ts: Mapping[str, float]
    newest_ts: float
    newest_year: int | None
    # Each item's interaction times, sorted (time-local popularity).
    times: Mapping[str, np.ndarray]

    @classmethod
    def build(cls, rows: Sequence[Interaction], items: Mapping[str, Item]) -> ItemStats:
        times: dict[str, list[float]] = {}
        for r in rows:
            times.setdefault(r.item_id, []).append(r.timestamp)
        years = [
            y
            for it in items.values()
            if isinstance(y := it.metadata.get("year"), int) and not isinstance(y, bool)
        ]
        return cls(
            times={i: np.sort(np.asarray(t, dtype=float)) for i, t in times.items()},
            counts={i: len(t) for i, t in times.items()},
            last_ts={i: max(t) for i, t in times.items()},
            median_ts={i: float(statistics.median(t)) for i, t in times.items()},
            newest_ts=max((r.timestamp for r in rows), default=0.0),
            newest_year=max(years) if years else None,
        )


def _genres(item: Item) -> set[str]:
    return {g.strip() for g in str(item.metadata.get("genres", "")).split("|") if g.strip()}


def _tags(item: Item) -> set[str]:
    return {a for a in attributes(item) if a.startswith("tag ")}


def _unit(vec: Sequence[float]) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float64)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


ScoreFn = Callable[[SourceKind], Retriever]
Embeddings = Callable[[Sequence[str]], Mapping[str, Sequence[float]]]


@dataclass
class FeatureRequest:
    """What one request's features are computed from."""

    query: RetrievalQuery
    liked: Sequence[Item]  # the liked history items the LLM would see (most recent)
    n_liked: int  # liked items in the whole history (the bucket)
    candidates: Sequence[Item]
    query_text: str | None = None
    profile: str | None = None
    # When the user's latest history interaction happened (None: no timestamps given).
    user_ts: float | None = None


class FeatureBuilder:
    """Computes the feature matrix of requests: one row per candidate, one column per name."""

    def __init__(
        self, cfg: Config, source: ScoreFn, embeddings: Embeddings, stats: ItemStats
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.embeddings = embeddings
        self.stats = stats
        self.kinds = feature_sources(cfg)
        self.names = feature_names(cfg)

    def llm_on(self, n_liked: int) -> bool:
        return bool(self.cfg.ranking.learned.llm_feature.get(history_bucket(n_liked), False))

    def request_names(self, n_liked: int) -> list[str]:
        """The features that rank this request (the LLM's only where its bucket is on)."""
        if self.llm_on(n_liked):
            return list(self.names)
        return [n for n in self.names if n != LLM_FEATURE]

    def matrix(self, req: FeatureRequest, llm_scores: Sequence[float] | None) -> np.ndarray:
        ids = [c.id for c in req.candidates]
        n = len(ids)
        cols: list[np.ndarray] = []
        for kind in self.kinds:
            scores = [float(s) for s in self.source(kind).score(req.query, ids)]
            finite = [s if math.isfinite(s) else -1e9 for s in scores]
            ranks = ranks_of(finite, ids)
            cols.append(np.array([s if math.isfinite(s) else np.nan for s in scores]))
            cols.append(np.array([(ranks[i] - 1) / max(n - 1, 1) for i in ids], dtype=float))
        st = self.stats
        cols += _stats_columns(st, req.candidates, ids)
        cols += _user_time_columns(st, req.user_ts, ids)
        liked = list(req.liked)
        cols += _history_columns(liked, req.candidates)
        vecs = self.embeddings([h.id for h in liked] + ids) if liked else {}
        cols += _embedding_columns(vecs, liked, ids)
        cols += [np.full(n, float(req.n_liked)), np.full(n, float(len(req.query.history)))]
        if LLM_FEATURE in self.names:
            on = llm_scores is not None and self.llm_on(req.n_liked)
            cols.append(np.array(list(llm_scores), dtype=float) if on else np.full(n, np.nan))  # type: ignore[arg-type]
        out = np.column_stack(cols) if cols else np.zeros((n, 0))
        assert out.shape == (n, len(self.names))
        return out


def _stats_columns(st: ItemStats, candidates: Sequence[Item], ids: list[str]) -> list[np.ndarray]:
    """Popularity and age: log count, years since the last and the median interaction, and
    years between the item's release and the newest one's."""
    counts = np.array([math.log1p(st.counts.get(i, 0)) for i in ids])
    last = np.array(
        [(st.newest_ts - st.last_ts[i]) / _YEAR_S if i in st.last_ts else np.nan for i in ids]
    )
    median = np.array(
        [(st.newest_ts - st.median_ts[i]) / _YEAR_S if i in st.median_ts else np.nan for i in ids]
    )
    year_gap = []
    for c in candidates:
        y = c.metadata.get("year")
        ok = isinstance(y, int) and not isinstance(y, bool) and st.newest_year is not None
        year_gap.append(float(st.newest_year - y) if ok else np.nan)  # type: ignore[operator]
    return [counts, last, median, np.array(year_gap, dtype=float)]


def _user_time_columns(st: ItemStats, ut: float | None, ids: list[str]) -> list[np.ndarray]:
    """Each item's interactions against the user's latest one: years from it to the item's
    first, median and last interaction, and log count of those near it."""
    first_after, median_after, last_after, near = [], [], [], []
    for i in ids:
        t = st.times.get(i)
        if ut is None or t is None or not len(t):
            first_after.append(np.nan)
            median_after.append(np.nan)
            last_after.append(np.nan)
            near.append(np.nan if ut is None else 0.0)
            continue
        first_after.append((float(t[0]) - ut) / _YEAR_S)
        median_after.append((st.median_ts[i] - ut) / _YEAR_S)
        last_after.append((float(t[-1]) - ut) / _YEAR_S)
        lo, hi = np.searchsorted(t, [ut - NEAR_S, ut + NEAR_S])
        near.append(math.log1p(int(hi - lo)))
    return [np.array(first_after), np.array(median_after), np.array(last_after), np.array(near)]


def _history_columns(liked: list[Item], candidates: Sequence[Item]) -> list[np.ndarray]:
    """Content against the liked history: year offset from its mean, genre Jaccard and
    affinity, shared tags."""
    hist_years = [
        y for h in liked if isinstance(y := h.metadata.get("year"), int) and not isinstance(y, bool)
    ]
    mean_year = sum(hist_years) / len(hist_years) if hist_years else None
    year_vs = []
    for c in candidates:
        y = c.metadata.get("year")
        ok = isinstance(y, int) and not isinstance(y, bool) and mean_year is not None
        year_vs.append(float(y) - mean_year if ok else np.nan)  # type: ignore[arg-type,operator]
    hist_genres = [_genres(h) for h in liked]
    union = set().union(*hist_genres) if hist_genres else set()
    hist_tags = set().union(*(_tags(h) for h in liked)) if liked else set()
    jac, aff, tags = [], [], []
    for c in candidates:
        g = _genres(c)
        jac.append(len(g & union) / len(g | union) if g | union else 0.0)
        if g and hist_genres:
            aff.append(
                sum(sum(1 for hg in hist_genres if x in hg) for x in g)
                / (len(g) * len(hist_genres))
            )
        else:
            aff.append(0.0)
        tags.append(float(len(_tags(c) & hist_tags)))
    return [np.array(year_vs), np.array(jac), np.array(aff), np.array(tags)]


def _embedding_columns(
    vecs: Mapping[str, Sequence[float]], liked: list[Item], ids: list[str]
) -> list[np.ndarray]:
    """Mean and max cosine of each candidate to the liked history's embeddings."""
    hist_vecs = [_unit(vecs[h.id]) for h in liked if h.id in vecs]
    mean_cos, max_cos = [], []
    hmat = np.stack(hist_vecs) if hist_vecs else None
    for i in ids:
        if hmat is None or i not in vecs:
            mean_cos.append(np.nan)
            max_cos.append(np.nan)
            continue
        sims = hmat @ _unit(vecs[i])
        mean_cos.append(float(sims.mean()))
        max_cos.append(float(sims.max()))
    return [np.array(mean_cos), np.array(max_cos)]


def llm_scores(
    llm: LLM, ranking: RankingConfig, reqs: Sequence[FeatureRequest], seed: int = 0
) -> list[list[float]]:
    """The scoring mode's aggregated label score of every candidate of each request (one
    batched scoring call; no rationales, the ranker's fusion off)."""
    cfg = ranking.model_copy(update={"rationale_top_r": 0, "fusion_weight": 1.0})
    ranker = ScoringRanker(llm, cfg)
    todo = [
        RankRequest(
            [Candidate(item=c, score=0.0, source="learned") for c in r.candidates],
            list(r.liked),
            r.query_text,
            r.profile,
            len(r.candidates),
        )
        for r in reqs
    ]
    out = []
    for req, (items, _) in zip(reqs, ranker.rank_many(todo, seed=seed), strict=True):
        by_id = {it.item.id: it.llm_score for it in items}
        out.append([float(by_id[c.id] or 0.0) for c in req.candidates])
    return out


@dataclass
class LearnedModel:
    """A trained LightGBM booster, the features it takes (in order) and its provenance."""

    booster: Any  # lightgbm.Booster
    features: list[str]
    provenance: dict[str, Any]

    def scores(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(self.booster.predict(x), dtype=float)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE))
        meta = {"features": self.features, "provenance": self.provenance}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LearnedModel:
        import lightgbm as lgb

        model, meta = folder / MODEL_FILE, folder / META_FILE
        if not model.exists() or not meta.exists():
            raise LearnedRankerError(
                f"ranking.mode = 'learned' needs a trained ranker at {folder}: run "
                "`genre fit --ranker` (or set ranking.mode to 'retrieval')"
            )
        data = json.loads(meta.read_text(encoding="utf-8"))
        booster = lgb.Booster(model_file=str(model))
        return cls(booster, list(data["features"]), dict(data["provenance"]))

    def check(self, cfg: Config, folder: Path | str = "models/ranker") -> None:
        """The config asks for exactly the features the model was trained on."""
        want = feature_names(cfg)
        if want != self.features:
            raise LearnedRankerError(
                f"the ranker at {folder} was trained on features {self.features}; the config "
                f"(ranking.learned.feature_sources / llm_feature, retrieval.sources) now gives "
                f"{want}: run `genre fit --ranker` again"
            )


def ranker_folder(cfg: Config) -> Path:
    return cfg.store.models_dir() / "ranker"
