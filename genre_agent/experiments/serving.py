"""Serving experiments: which experiment and variant a request falls in, one lazily built
configuration (an "arm") per variant, and the exposure log.

An arm is whatever the caller serves a configuration with (genre_agent.http.service's Arm:
a Recommender, its fast twin and their caches), built from the variant's config
(``variant_config``: the base config plus the overlay) on first use and kept.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from genre_agent.config import Config, variant_config
from genre_agent.experiments.assign import assign
from genre_agent.experiments.config import ExperimentConfig
from genre_agent.experiments.exposures import Exposure
from genre_agent.experiments.readout import find_experiment, load_report
from genre_agent.experiments.report import ExperimentReport
from genre_agent.storage.base import ExposureBackend
from genre_agent.types import Recommendation

A = TypeVar("A")


@dataclass(frozen=True)
class Pick:
    """The experiment a request falls in; ``variant`` is None for an interleave one."""

    experiment: ExperimentConfig
    variant: str | None


def llm_cost(rec: Recommendation) -> tuple[int, float]:
    """Tokens (prompt + completion) and seconds of the LLM stages of an answer."""
    t = rec.trace
    seconds = sum(s.seconds for s in t.timings if s.stage.startswith("llm"))
    return t.prompt_tokens + t.completion_tokens, seconds


class ExperimentRouter(Generic[A]):
    """The experiments of ``config.service.experiments`` for one service process."""

    def __init__(
        self,
        config: Config,
        make_arm: Callable[[Config], A],
        exposures: Callable[[], ExposureBackend],
    ) -> None:
        self.config = config
        self._make_arm = make_arm
        self._open_exposures = exposures
        self._store: ExposureBackend | None = None
        self._arms: dict[tuple[str, str], A] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [e.name for e in self.config.service.experiments]

    def pick(self, user_id: str | None) -> Pick | None:
        """The first enabled experiment (a user is in at most one), and for an A/B one the
        variant the stable hash gives ``user_id``; None without a user or experiment."""
        if user_id is None:
            return None
        for exp in self.config.service.experiments:
            if exp.enabled:
                return Pick(exp, None if exp.kind == "interleave" else assign(exp, user_id).name)
        return None

    def arm(self, experiment: str, variant: str) -> A:
        """The arm serving ``variant``, built from its config on first use."""
        key = (experiment, variant)
        with self._lock:
            found = self._arms.get(key)
            if found is None:
                found = self._make_arm(variant_config(self.config, experiment, variant))
                self._arms[key] = found
            return found

    def store(self) -> ExposureBackend:
        with self._lock:
            if self._store is None:
                self._store = self._open_exposures()
            return self._store

    def log(
        self,
        pick: Pick,
        rec: Recommendation,
        request_id: str | None,
        teams: list[str] | None = None,
    ) -> None:
        """Store the exposure of an answer (its items in order, per item the team when
        interleaved, the answer's LLM cost)."""
        if rec.user_id is None:
            return
        tokens, seconds = llm_cost(rec)
        self.store().add_exposure(
            Exposure(
                experiment=pick.experiment.name,
                variant=pick.variant or "",
                user_id=rec.user_id,
                request_id=request_id or uuid.uuid4().hex,
                ts=time.time(),
                items=tuple(it.item.id for it in rec.items),
                teams=tuple(teams) if teams is not None else None,
                llm_tokens=tokens,
                llm_seconds=seconds,
            )
        )

    def report(self, name: str) -> ExperimentReport:
        find_experiment(self.config, name)  # UnknownExperiment before opening anything
        return load_report(self.config, self.store(), name)
