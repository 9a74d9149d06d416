"""Baselines are Recommender configs: retrieval-only, ranked by one source or the fusion.

Each is run through the same ``Recommender`` as every variant (see ``runner``), fitted on
training interactions only (``protocols.train_interactions``), ordering candidates by the
source's score with ties broken by item id; ``random`` is a seeded shuffle per user.
``als``, ``bpr`` and ``sequential`` are the fitted sources of ``service.fit.FITTERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

BaselineKind = Literal[
    "random",
    "popularity",
    "bm25",
    "embedding",
    "itemknn",
    "als",
    "bpr",
    "sequential",
    "fusion",
]
ALL_BASELINES: tuple[BaselineKind, ...] = get_args(BaselineKind)
# What an experiment runs when it names no baselines: the sources that need no long fit.
DEFAULT_BASELINES: tuple[BaselineKind, ...] = (
    "random",
    "popularity",
    "bm25",
    "embedding",
    "itemknn",
    "fusion",
    "sequential",
)


def baseline_overrides(
    name: str, fusion_weights: Mapping[str, float], seed: int = 0
) -> dict[str, Any]:
    """The dotted config keys that make the base config this baseline."""
    if name not in ALL_BASELINES:
        raise KeyError(f"unknown baseline {name!r}; known: {list(ALL_BASELINES)}")
    sources = dict(fusion_weights) if name == "fusion" else {name: 1.0}
    return {
        "ranking.mode": "retrieval",
        "ranking.rationale_top_r": 0,
        "retrieval.sources": sources,
        "retrieval.seed": seed,
    }
