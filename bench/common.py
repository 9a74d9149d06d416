"""Shared set-up for benchmarks: ml-latest-small indexed once into a reusable Chroma dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DATA = Path(
    os.environ.get(
        "GENRE_DEMO_DATA", Path(__file__).resolve().parents[2] / "shared/data/ml-latest-small"
    )
)


def ml_recommender(workdir: Path, **overrides: Any):
    from genre_agent import Recommender, load_movielens_items
    from genre_agent.config import load_config
    from genre_agent.storage.interactions import read_interactions

    cfg = load_config(
        {
            "store": {
                "kind": "embedded",
                "path": str(workdir / "chroma"),
                "interactions_path": str(workdir / "interactions.sqlite"),
                "collection": "ml_latest_small",
            }
        },
        overrides=overrides,
    )
    rec = Recommender.from_config(cfg)
    rec.index(load_movielens_items(DATA))  # idempotent: a no-op after the first run
    if not rec.interactions.history("1"):
        rec.add_interactions(read_interactions(DATA / "ratings.csv"))
    from genre_agent.service.fit import provenance

    if provenance(rec.config, "itemknn") is None:
        rec.fit()  # the default sources include item-kNN
    return rec


def fake_ml_service(workdir: Path, **overrides: Any):
    """An HTTP Service over ml-latest-small with the hashing embedder (64 dims: indexing
    takes seconds) and the fake LLM, its stores under ``workdir``."""
    from genre_agent.http.service import Service

    rec = ml_recommender(
        workdir,
        **{
            "embedder.kind": "fake",
            "llm.engine": "fake",
            "store.collection": "ml_small_fake",
            "profile.path": str(workdir / "p.sqlite"),
            "chat.sessions_path": str(workdir / "chat.sqlite"),
            "service.queue_metrics": False,
            **overrides,
        },
    )
    return Service(rec.config, rec)


def sample_users(rec, n: int, seed: int = 0) -> list[str]:
    import random

    users = sorted(rec.interactions.users(), key=int)
    return random.Random(seed).sample(users, min(n, len(users)))


def pct(values: list[float], q: float) -> float:
    """The q-quantile of ``values`` (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def print_metrics(rows: list[tuple[str, str]]) -> None:
    """A two-column ``metric | value`` table."""
    width = max(len(a) for a, _ in rows)
    print(f"{'metric'.ljust(width)} | value")
    print(f"{'-' * width}-|------")
    for a, b in rows:
        print(f"{a.ljust(width)} | {b}")
