"""`genre worker`: the fitting worker. It refits when enough new interactions have arrived.

Each cycle compares the interaction store's count with the count the fitted models were
fitted on (their ``provenance.json``; the oldest of them). It refits every fitted source
(``service.fit.kinds_to_fit``, and the learned ranker when ``ranking.mode`` needs it) when
the two differ by at least ``fit.min_new_interactions``, or when a model is missing. Each
model is published atomically (storage/models.py), so serving workers swap it in on their
next request; their cached answers (service/cached.py) are keyed by the models' versions,
so a refit refreshes them. Optionally it then fills the cache for the users with the
latest interactions (``fit.warm_users``). One line per cycle; a stop request (SIGTERM,
Ctrl-C) is honoured between cycles and while waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from genre_agent.ranking import needs
from genre_agent.ranking.learned import ranker_folder
from genre_agent.service.fit import FitReport, kinds_to_fit, provenance
from genre_agent.service.recommender import Recommender
from genre_agent.storage.models import resolve

Log = Callable[[str], None]


@dataclass(frozen=True)
class Cycle:
    """What one cycle saw and did."""

    stored: int
    # The count the oldest fitted model was fitted on; None: a model is missing.
    fitted_on: int | None
    refit: bool
    reports: list[FitReport] = field(default_factory=list)
    warmed: int = 0
    seconds: float = 0.0
    ranker: bool = False

    def line(self, min_new: int) -> str:
        base = "no model" if self.fitted_on is None else f"fitted on {self.fitted_on}"
        head = f"interactions {self.stored}, {base}"
        if not self.refit and self.stored == 0:
            return f"{head}: nothing to fit on; no refit"
        if not self.refit:
            new = self.stored - (self.fitted_on or 0)
            return f"{head}: {new:+d}, below fit.min_new_interactions = {min_new}; no refit"
        kinds = ", ".join([r.kind for r in self.reports] + (["ranker"] if self.ranker else []))
        warm = f", cache warmed for {self.warmed} users" if self.warmed else ""
        return f"{head}: refit {kinds} in {self.seconds:.1f}s{warm}"


def fitted_on(rec: Recommender) -> int | None:
    """The interaction count of the oldest fitted model (None: one has none, or the mode
    needs the learned ranker and it has none)."""
    if needs(rec.config).learned_model and resolve(ranker_folder(rec.config)) is None:
        return None
    counts = []
    for kind in kinds_to_fit(rec.config):
        prov = provenance(rec.config, kind)
        if prov is None:
            return None
        counts.append(int(prov.get("interactions", 0)))
    return min(counts)


def due(stored: int, base: int | None, min_new: int) -> bool:
    """Refit when a model is missing, or the store changed by ``min_new`` rows (added or,
    after users were forgotten, deleted)."""
    if stored == 0:
        return False  # nothing to fit on
    return base is None or abs(stored - base) >= min_new


def latest_users(rec: Recommender, n: int) -> list[str]:
    """The ``n`` users with the most recent interactions, latest first."""
    rows = sorted(rec.interactions.all(), key=lambda r: r.timestamp, reverse=True)
    return list(dict.fromkeys(r.user_id for r in rows))[:n]


def run_cycle(rec: Recommender, warm: Callable[[list[str]], int] | None = None) -> Cycle:
    """One check, and a refit when it is due."""
    cfg = rec.config.fit
    stored, base = rec.interactions.count(), fitted_on(rec)
    if not due(stored, base, cfg.min_new_interactions):
        return Cycle(stored, base, refit=False)
    t0 = time.perf_counter()
    reports, ranker = rec.fit(), needs(rec.config).learned_model
    if ranker:
        from genre_agent.service.learn import fit_ranker

        fit_ranker(rec)
    warmed = 0
    if warm is not None and cfg.warm_users:
        warmed = warm(latest_users(rec, cfg.warm_users))
    return Cycle(stored, base, True, reports, warmed, time.perf_counter() - t0, ranker)


def run_worker(
    rec: Recommender,
    should_stop: Callable[[], bool],
    log: Log,
    warm: Callable[[list[str]], int] | None = None,
    cycles: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Cycle every ``fit.every_s`` until ``should_stop()`` (or ``cycles`` ran); returns
    how many cycles ran. A failed refit is logged and retried next cycle."""
    every, done = rec.config.fit.every_s, 0
    while not should_stop() and (cycles is None or done < cycles):
        try:
            log(run_cycle(rec, warm).line(rec.config.fit.min_new_interactions))
        except Exception as exc:  # the worker outlives one bad cycle; the line says why
            log(f"cycle failed: {type(exc).__name__}: {exc}")
        done += 1
        if cycles is not None and done >= cycles:
            break
        waited = 0.0
        while waited < every and not should_stop():
            step = min(0.5, every - waited)
            sleep(step)
            waited += step
    return done
