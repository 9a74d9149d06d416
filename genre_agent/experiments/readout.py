"""An experiment's report from the stores: its exposures, the feedback of its users since
the first of them, joined within ``window_s`` (genre_agent.experiments.exposures)."""

from __future__ import annotations

from genre_agent.config import Config
from genre_agent.errors import GenreError
from genre_agent.experiments.config import ExperimentConfig
from genre_agent.experiments.exposures import Signal, is_positive, join
from genre_agent.experiments.report import ExperimentReport, build_report
from genre_agent.storage.base import ExposureBackend


class UnknownExperiment(GenreError):
    """No experiment of that name in service.experiments."""


def find_experiment(cfg: Config, name: str) -> ExperimentConfig:
    for exp in cfg.service.experiments:
        if exp.name == name:
            return exp
    known = [e.name for e in cfg.service.experiments]
    raise UnknownExperiment(f"no experiment {name!r} in service.experiments (known: {known})")


def load_report(cfg: Config, store: ExposureBackend, name: str) -> ExperimentReport:
    """The report of experiment ``name`` over everything stored so far."""
    exp = find_experiment(cfg, name)
    exposures = store.exposures(name)
    since = min((e.ts for e in exposures), default=0.0)
    users = {e.user_id for e in exposures}
    liked = cfg.retrieval.min_liked_rating
    signals = [
        Signal(user, item, ts, is_positive(type_, rating, liked), request_id)
        for user, item, ts, type_, rating, request_id in store.feedback_since(users, since)
    ]
    return build_report(exp, join(exposures, signals, exp.window_s))
