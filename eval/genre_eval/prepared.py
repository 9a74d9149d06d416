"""An experiment's data served as a world, its cases, and the configs its baselines are
served with (moved from genre_eval.runner, which re-exports every name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genre_agent.config import Config
from genre_agent.service.requests import RecRequest
from genre_eval.baselines import baseline_overrides
from genre_eval.datasets import Dataset, load_dataset
from genre_eval.experiment import Experiment
from genre_eval.protocols import (
    Eligibility,
    EvalCase,
    build_cases,
    eligibility,
    split_dataset,
)
from genre_eval.world import EvalWorld


@dataclass
class Prepared:
    ds: Dataset
    world: EvalWorld
    cases: list[EvalCase]
    retriever_recall: float | None
    # How protocol.min_history and protocol.users chose the users (None: not counted).
    eligibility: Eligibility | None = None


def protocol_overrides(exp: Experiment) -> dict[str, Any]:
    """What the protocol fixes in every system's config: two-stage systems retrieve as many
    candidates as the protocol names."""
    if exp.protocol.kind == "two-stage":
        return {"retrieval.n_candidates": exp.protocol.n_candidates}
    return {}


def baseline_config(
    exp: Experiment, name: str, overrides: Mapping[str, Any] | None = None
) -> Config:
    """A baseline is the base config ranking by retrieval with one source (or the fusion)."""
    merged = {
        **baseline_overrides(name, exp.fusion_weights, exp.protocol.seed),
        **protocol_overrides(exp),
        **(overrides or {}),
    }
    return exp.base_config(merged)


def prepare(
    exp: Experiment, split: str | None = None, overrides: dict[str, Any] | None = None
) -> Prepared:
    """Load the data, serve it as a world (index, training interactions), build the cases."""
    ds = split_dataset(load_dataset(exp.dataset), exp.protocol)
    counted = eligibility(ds, exp.protocol)  # before indexing: no eligible user is an error
    base = exp.base_config(overrides)
    world = EvalWorld(ds, base.embedder)
    proto = exp.protocol
    retrieve = None
    if proto.kind == "retriever":
        # Hard negatives come from the named source, served as a retrieval-only config.
        n = {"retrieval.n_candidates": proto.n_candidates}
        hard = world.recommender(baseline_config(exp, proto.retriever, {**(overrides or {}), **n}))

        def retrieve(history: Sequence[str], exclude: set[str], k: int) -> list[str]:
            req = RecRequest(history=list(history), exclude=sorted(exclude), k=min(k, 100))
            return [it.item.id for it in hard.recommend_many([req])[0].items]

    cases = build_cases(
        ds,
        proto,
        split or exp.split,  # type: ignore[arg-type]
        popularity=world.popularity,
        retrieve=retrieve,
    )
    return Prepared(ds, world, cases, None, counted)
