"""Training the learned ranker (``ranking.mode = "learned"``): ``genre fit --ranker`` and the
evaluation harness both call :func:`train_ranker`.

Each example is a user's history and a held-out target. The fitted sources (``FITTERS``) are
fitted in memory on the training interactions, which never contain the targets; the
candidates of an example are what the served pipeline retrieves for its history
(``ranking.learned.retrieved_negatives`` of them, the target removed) plus
``random_negatives`` seeded random catalog items the user never saw, and the target (label
1). When the target is not among the retrieved items, the group keeps only the random
negatives: the served ranker never sees a list without its target's retrieval, and ranking
it above the retrieved items would teach the model that looking unlike the history is good.
One group per user; LightGBM's lambdarank learns to put the target first.

Label-blindness: the caller names the (user, item) pairs that must never be seen (the
harness passes its test targets). If any training label, history row or training
interaction is one of them, training is refused.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_agent.catalog.items import Item
from genre_agent.config import Config, LearnedConfig
from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM
from genre_agent.ranking.learned import (
    FeatureBuilder,
    FeatureRequest,
    ItemStats,
    LearnedModel,
    LearnedRankerError,
    feature_names,
    feature_sources,
    history_bucket,
    llm_scores,
    ranker_folder,
    uses_llm,
)
from genre_agent.service.fit import FITTERS, save_atomically
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import RecRequest
from genre_agent.service.sources import Sources
from genre_agent.storage.chroma import ChromaStore
from genre_agent.storage.interactions import Interaction, InteractionStore, time_ordered
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, Retriever, stable_seed
from retrievers.fusion import FusionRetriever

Progress = Callable[[int, int], None]
LLM_BATCH = 16


@dataclass(frozen=True)
class Example:
    """One training group: a user's visible history and the held-out target."""

    user_id: str
    history: Sequence[Interaction]
    target: str


def by_user(rows: Sequence[Interaction], seed: int = 0) -> dict[str, list[Interaction]]:
    """Each user's rows by timestamp; rows that share one in a seeded order that does not
    depend on the ids (storage.interactions.time_ordered), so the held-out last item is not
    "the largest id of the last second"."""
    out: dict[str, list[Interaction]] = {}
    for r in rows:
        out.setdefault(r.user_id, []).append(r)
    return {u: time_ordered(rs, seed) for u, rs in out.items()}


def last_item_split(rows: Sequence[Interaction]) -> tuple[list[Interaction], list[Example]]:
    """``genre fit --ranker``: each user's last interaction is the target; the training
    interactions are everything else. Users with fewer than two interactions are skipped."""
    train: list[Interaction] = []
    examples: list[Example] = []
    for user, rs in sorted(by_user(rows).items()):
        if len(rs) < 2:
            train += rs
            continue
        train += rs[:-1]
        examples.append(Example(user, rs[:-1], rs[-1].item_id))
    return train, examples


def check_label_blind(
    train_rows: Sequence[Interaction],
    examples: Sequence[Example],
    forbidden: Collection[tuple[str, str]],
) -> None:
    """Refuse (LearnedRankerError) if any label or training row is a forbidden pair."""
    if not forbidden:
        return
    bad_labels = [(e.user_id, e.target) for e in examples if (e.user_id, e.target) in forbidden]
    seen = list(train_rows) + [r for e in examples for r in e.history]
    bad_rows = sorted({(r.user_id, r.item_id) for r in seen if (r.user_id, r.item_id) in forbidden})
    if bad_labels or bad_rows:
        raise LearnedRankerError(
            f"refusing to train the learned ranker: {len(bad_labels)} training labels and "
            f"{len(bad_rows)} training interactions are held-out (user, item) pairs it must "
            f"never see, e.g. {(bad_labels + bad_rows)[:3]}"
        )


def _random_negatives(ids: Sequence[str], n: int, seen: set[str], rng: random.Random) -> list[str]:
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < 50 * (n + 1):
        tries += 1
        cand = ids[rng.randrange(len(ids))]
        if cand not in seen and cand not in out:
            out.append(cand)
    return out


def train_ranker(
    cfg: Config,
    store: ChromaStore,
    catalog: Mapping[str, Item],
    train_rows: Sequence[Interaction],
    examples: Sequence[Example],
    forbidden: Collection[tuple[str, str]] = frozenset(),
    fitted: Mapping[str, Retriever] | None = None,
    llm: LLM | None = None,
    progress: Progress | None = None,
    data_sha256: str = "",
) -> LearnedModel:
    """Train the lambdarank model of ``cfg`` (see the module docstring).

    ``fitted`` holds sources already fitted on ``train_rows`` (the harness's); any other
    fitted source the config uses is fitted here, in memory, on ``train_rows``.
    """
    check_label_blind(train_rows, examples, forbidden)
    t0 = time.perf_counter()
    lc = cfg.ranking.learned
    if lc.train_users is not None and len(examples) > lc.train_users:
        pick = random.Random(lc.seed).sample(range(len(examples)), lc.train_users)
        examples = [examples[n] for n in sorted(pick)]
    if not examples:
        raise LearnedRankerError(
            "no training examples: the learned ranker needs users with at least two "
            "interactions (history + target)"
        )
    rec, sources = _served(cfg, store, catalog, train_rows, fitted, llm)
    builder = FeatureBuilder(
        cfg, sources.get, store.embeddings, ItemStats.build(train_rows, catalog)
    )
    groups, skipped, hits = _groups(rec, catalog, examples, progress)
    by_req = _llm_feature(cfg, builder, groups, llm)
    xs = [builder.matrix(r, by_req.get(n)) for n, (r, _) in enumerate(groups)]
    x = np.vstack(xs)
    y = np.concatenate([np.asarray(lab, dtype=float) for _, lab in groups])
    sizes = [len(lab) for _, lab in groups]
    booster = fit_booster(x, y, sizes, lc, builder.names)
    buckets: dict[str, int] = {}
    for r, _ in groups:
        b = history_bucket(r.n_liked)
        buckets[b] = buckets.get(b, 0) + 1
    prov: dict[str, Any] = {
        "kind": "ranker",
        "data_sha256": data_sha256,
        "training_interactions": len(train_rows),
        "groups": len(groups),
        "groups_per_bucket": buckets,
        "skipped_examples": skipped,
        "rows": int(x.shape[0]),
        "targets_retrieved": hits,
        "forbidden_pairs_checked": len(forbidden),
        "llm_scored_groups": len(by_req),
        "features": builder.names,
        "config": settings(cfg),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fit_seconds": round(time.perf_counter() - t0, 3),
    }
    return LearnedModel(booster, feature_names(cfg), prov)


def _served(
    cfg: Config,
    store: ChromaStore,
    catalog: Mapping[str, Item],
    train_rows: Sequence[Interaction],
    fitted: Mapping[str, Retriever] | None,
    llm: LLM | None,
) -> tuple[Recommender, Sources]:
    """The served retrieval pipeline over the training rows, with no LLM ranking and no
    rationales; every fitted source it (or the learned features) reads, fitted on them."""
    rcfg = cfg.model_copy(
        update={
            "ranking": cfg.ranking.model_copy(update={"mode": "retrieval", "rationale_top_r": 0})
        }
    )
    interactions = InteractionStore(":memory:")
    interactions.add(train_rows)
    kinds = [k for k, w in cfg.retrieval.sources.items() if w > 0] + feature_sources(cfg)
    models: dict[str, Retriever] = dict(fitted or {})
    for kind in dict.fromkeys(kinds):
        if kind in FITTERS and kind not in models:
            models[kind] = FITTERS[kind].fit(cfg, catalog, train_rows, None)
    sources = Sources(rcfg, store, interactions, fitted=models)
    sources.set_catalog(catalog)
    return Recommender(rcfg, store, interactions, llm=llm, sources=sources), sources


Group = tuple[FeatureRequest, list[int]]


def _groups(
    rec: Recommender,
    catalog: Mapping[str, Item],
    examples: Sequence[Example],
    progress: Progress | None,
) -> tuple[list[Group], int, int]:
    """One lambdarank group per usable example; how many were skipped; how many targets
    the served retrieval found."""
    groups: list[Group] = []
    skipped = hits = 0
    all_ids = sorted(catalog)
    for n, ex in enumerate(examples):
        if progress:
            progress(n, len(examples))
        group, hit = _group(rec, catalog, ex, all_ids)
        hits += hit
        if group is None:
            skipped += 1
            continue
        groups.append(group)
    if progress:
        progress(len(examples), len(examples))
    if not groups:
        raise LearnedRankerError("no training example has a target and history in the catalog")
    return groups, skipped, hits


def _group(
    rec: Recommender, catalog: Mapping[str, Item], ex: Example, all_ids: Sequence[str]
) -> tuple[Group | None, bool]:
    """The example's group (target, retrieved and random negatives, shuffled; None when
    the example cannot be used) and whether the served retrieval found the target."""
    lc = rec.config.ranking.learned
    if ex.target not in catalog:
        return None, False

    def retrieve(query: RetrievalQuery, served: FusionRetriever) -> list[Candidate]:
        return served.search(query, lc.retrieved_negatives + 1)

    req = RecRequest(user_id=ex.user_id, history=list(ex.history), k=1)
    try:
        p = rec.resolve(req, retrieve)
    except GenreError:
        return None, False  # no known history item
    if p.strategy == "popular":
        return None, False  # a cold request: served the popularity list, not the ranker
    retrieved = [c.item.id for c in p.candidates if c.item.id != ex.target]
    hit = len(retrieved) < len(p.candidates)
    retrieved = retrieved[: lc.retrieved_negatives] if hit else []
    # Without the target among the retrieved items the group keeps only random
    # negatives (module docstring).
    rng = random.Random(stable_seed(lc.seed, ex.user_id, "learned"))
    seen = {r.item_id for r in ex.history} | {ex.target} | set(retrieved)
    rand = _random_negatives(all_ids, lc.random_negatives, seen, rng)
    if not retrieved and not rand:
        return None, hit
    ids = [ex.target, *retrieved, *rand]
    rng.shuffle(ids)
    freq = FeatureRequest(
        p.query,
        p.history.liked,
        len(p.history.items) - len(p.history.disliked),
        [catalog[i] for i in ids],
        None,
        None,
        max((r.timestamp for r in ex.history if r.timestamp), default=None),
    )
    return (freq, [int(i == ex.target) for i in ids]), hit


def _llm_feature(
    cfg: Config, builder: FeatureBuilder, groups: Sequence[Group], llm: LLM | None
) -> dict[int, list[float]]:
    """The LLM's label scores per group, where its history bucket has the feature on."""
    by_req: dict[int, list[float]] = {}
    if not uses_llm(cfg):
        return by_req
    ask = [n for n, (r, _) in enumerate(groups) if builder.llm_on(r.n_liked)]
    if ask and llm is None:
        raise LearnedRankerError(
            "ranking.learned.llm_feature is on: training needs the LLM (its label scores "
            "are a feature)"
        )
    for start in range(0, len(ask), LLM_BATCH):
        chunk = ask[start : start + LLM_BATCH]
        assert llm is not None
        got = llm_scores(llm, cfg.ranking, [groups[n][0] for n in chunk], cfg.llm.seed)
        by_req.update(zip(chunk, got, strict=True))
    return by_req


def fit_booster(
    x: np.ndarray, y: np.ndarray, sizes: Sequence[int], lc: LearnedConfig, names: Sequence[str]
) -> Any:
    """LightGBM lambdarank on rows ``x`` with labels ``y`` in groups of ``sizes``; the
    booster (deterministic for a seed)."""
    import lightgbm as lgb

    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=lc.n_estimators,
        num_leaves=lc.num_leaves,
        learning_rate=lc.learning_rate,
        random_state=lc.seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=2,
        verbose=-1,
    )
    model.fit(x, y, group=list(sizes), feature_name=[_lgb_name(n) for n in names])
    return model.booster_


def _lgb_name(name: str) -> str:
    # LightGBM forbids some characters in feature names.
    return name.replace(".", "_")


def settings(cfg: Config) -> dict[str, Any]:
    """The config that shapes a trained ranker (provenance; the harness's cache key)."""
    return {
        "learned": cfg.ranking.learned.model_dump(mode="json"),
        "feature_sources": feature_sources(cfg),
        "retrieval": cfg.retrieval.model_dump(mode="json"),
        "scoring": (
            {
                k: getattr(cfg.ranking, k)
                for k in ("scoring_template", "window_size", "permutations", "aggregate")
            }
            | {"model": cfg.llm.model}
            if uses_llm(cfg)
            else None
        ),
    }


@dataclass(frozen=True)
class RankerReport:
    path: Path
    provenance: dict[str, Any]


def fit_ranker(rec: Recommender, progress: Progress | None = None) -> RankerReport:
    """``genre fit --ranker``: train on the interaction store (each user's last interaction
    is the target) and save the model atomically under ``models/ranker/``."""
    cfg = rec.config
    rows = rec.interactions.all()
    if not rows:
        raise LearnedRankerError(
            f"genre fit --ranker: no interactions in {rec.interactions.describe()}: load some with "
            "`genre index CATALOG --interactions FILE`"
        )
    catalog = rec.sources.catalog()
    if not catalog:
        raise LearnedRankerError("genre fit --ranker: the catalog is empty: run `genre index`")
    train, examples = last_item_split(rows)
    llm = rec.llm if uses_llm(cfg) else None
    model = train_ranker(
        cfg,
        rec.store,
        catalog,
        train,
        examples,
        llm=llm,
        progress=progress,
        data_sha256=rec.interactions.fingerprint(),
    )

    def write(tmp: Path) -> None:
        model.save(tmp)
        (tmp / "provenance.json").write_text(
            json.dumps(model.provenance, indent=2), encoding="utf-8"
        )

    final = ranker_folder(cfg)
    save_atomically(final, write)
    rec.reload_ranker()  # the next request loads the new model
    return RankerReport(final, model.provenance)
