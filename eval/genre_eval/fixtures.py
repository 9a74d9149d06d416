"""A tiny synthetic dataset for unit tests and demos, written in any supported format."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

GENRES = ("Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance")


def tiny_rows(
    n_users: int = 12, n_items: int = 40, per_user: int = 10, seed: int = 7
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Items with one or two genres; users who mostly pick from one favourite genre."""
    rng = random.Random(seed)
    items: list[dict[str, object]] = []
    for i in range(1, n_items + 1):
        genres = sorted({GENRES[i % len(GENRES)], GENRES[(i * 7) % len(GENRES)]})
        items.append(
            {
                "id": str(i),
                "title": f"Movie {i} ({1980 + i})",
                "text": "Genres: " + ", ".join(genres) + ".",
                "metadata": {"genres": "|".join(genres)},
            }
        )
    inter = []
    for u in range(1, n_users + 1):
        fav = GENRES[u % len(GENRES)]
        liked = [it["id"] for it in items if fav in str(it["metadata"]["genres"])]  # type: ignore[index]
        pool = liked + rng.sample([it["id"] for it in items], 6)
        chosen = list(dict.fromkeys(rng.sample(pool, len(pool))))[:per_user]
        for t, item_id in enumerate(chosen):
            inter.append(
                {
                    "user_id": f"u{u}",
                    "item_id": item_id,
                    "timestamp": 1000 + t,
                    "rating": float(rng.choice([3, 4, 5])),
                }
            )
    return inter, items


def write_jsonl_dataset(directory: str | Path, **kw: int) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    inter, items = tiny_rows(**kw)
    (d / "interactions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in inter))
    (d / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    return d


def tiny_experiment(data: str | Path, **extra: Any) -> Any:
    """A fast experiment on :func:`write_jsonl_dataset` data (fake LLM and embedder).

    8 users, 8 candidates, batches of 3, small bootstrap; ``extra`` replaces top-level keys.
    """
    from genre_eval.experiment import load_experiment

    spec: dict[str, Any] = {
        "name": "t",
        "dataset": {"kind": "jsonl", "path": str(data)},
        "protocol": {"kind": "sampled", "n_candidates": 8, "users": 8, "min_history": 3},
        "config": {
            "llm": {"engine": "fake"},
            "embedder": {"kind": "fake"},
            # The LLM ranks (listwise) in these fixtures: they test the LLM variants' path.
            # Free-format rationales from the whole-history prompt: no two users share a
            # prompt, so a first run has no cache hits (the replay tests rely on it).
            "ranking": {
                "mode": "listwise",
                "rationale_template": "explain_item",
                "rationale_format": "free",
            },
        },
        "variants": [{"name": "a"}, {"name": "b", "k": 3, "history_len": 4}],
        "baselines": ["random", "popularity", "itemknn"],
        "ks": [1, 5],
        "primary": "ndcg@5",
        "batch_size": 3,
        "bootstrap": 200,
        "permutations": 200,
    }
    spec.update(extra)
    return load_experiment(spec)
