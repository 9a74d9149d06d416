"""``genre worker``: the fitting worker (genre_agent.service.worker), until SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import sys
import time
from typing import Annotated, Any

import typer

from genre_agent.cli.common import ConfigOpt, SetOpt, announce, cli_config


def worker(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    every: Annotated[
        float | None,
        typer.Option("--every", help="Seconds between checks (default: fit.every_s).", min=0.1),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One cycle, then stop.")] = False,
) -> None:
    """Refit the fitted sources (and the learned ranker) whenever the interaction store has
    at least fit.min_new_interactions more rows than the models were fitted on.

    Each model is published atomically: serving workers pick it up on their next request,
    and their cached answers (service.cache_url) are refreshed. One line per cycle on
    stderr. SIGTERM or Ctrl-C stops after the cycle in hand (a second one stops at once).
    """
    from genre_agent.http.service import fast_config
    from genre_agent.service.cached import CachedAnswers
    from genre_agent.service.recommender import Recommender
    from genre_agent.service.worker import run_worker
    from genre_agent.storage.cache import open_cache

    cfg = cli_config(config, set_)
    if every is not None:
        cfg = cfg.model_copy(update={"fit": cfg.fit.model_copy(update={"every_s": every})})
    rec = Recommender.from_config(cfg, announce=announce)
    # Warmed answers are the ones `genre serve`'s fast path reads: the same config, no LLM.
    serving = Recommender(fast_config(cfg), rec.store, rec.interactions, sources=rec.sources)
    cached = CachedAnswers(serving, open_cache(cfg), cfg.service.cache_top_n)
    stop = {"requested": False}

    def on_signal(signum: int, _frame: Any) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def log(line: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    log(
        f"fitting worker: every {cfg.fit.every_s:g}s, refit at "
        f"{cfg.fit.min_new_interactions} new interactions, models in {cfg.store.models_dir()}"
    )
    try:
        n = run_worker(
            rec,
            lambda: stop["requested"],
            log,
            warm=cached.warm if cached.cache.enabled else None,
            cycles=1 if once else None,
        )
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        rec.close()
    log(f"stopped ({'signal' if stop['requested'] else 'done'}) after {n} cycles")


def register(main_app: typer.Typer) -> None:
    main_app.command("worker")(worker)
