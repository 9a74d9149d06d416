"""``genre consume``: feedback events from a Redis Stream into the interaction store."""

from __future__ import annotations

import signal
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from genre_agent.cli.common import ConfigOpt, SetOpt, cli_config
from genre_agent.config import Config
from genre_agent.errors import GenreError

err = Console(stderr=True)


def consume(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Stop once the pending entries are handled and no new one came in block_ms.",
        ),
    ] = False,
) -> None:
    """Read feedback events from queue.stream (a Redis consumer group) into the store.

    Each batch is written in one transaction and acknowledged after it commits; entries
    read but not acknowledged (a crash) are re-read at the next start; a repeated event id
    is stored once. Malformed events go to queue.dead_letter with the reason. SIGTERM or
    Ctrl-C stops after the batch in hand (a second one stops at once).
    """
    from genre_agent.queue import Consumer, connect, queue_status, shown_url
    from genre_agent.storage.backends import open_interactions

    cfg = cli_config(config, set_)
    _check_store(cfg)
    q = cfg.queue
    client = connect(q)
    store = open_interactions(cfg)
    consumer = Consumer.from_config(cfg, client, store)
    stop = {"requested": False}

    def on_signal(signum: int, _frame: Any) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    _print_start(
        cfg,
        shown_url(q.redis_url),
        shown_url(cfg.store.database_url or "") or cfg.store.interactions_path,
    )
    group_at: list[float] = [0.0]
    group_text: list[str] = [""]

    def status_line(stats: Any, fresh: bool = False) -> str:
        now = time.time()
        if fresh or now - group_at[0] >= q.status_every_s or not group_text[0]:
            st = queue_status(client, q)
            lag = "?" if st.lag is None else st.lag
            group_at[0], group_text[0] = now, f"group lag {lag}, pending {st.pending}"
        return f"{stats.line()}; {group_text[0]}"

    live = Live("starting", console=err, transient=False) if err.is_terminal else None
    last_print = [time.time(), 0.0]

    def on_batch(stats: Any) -> None:
        if live is not None:
            live.update(status_line(stats))
            return
        # A line every status_every_s while events come in; when idle, every 10 times that.
        since = time.time() - last_print[0]
        changed = stats.read != last_print[1]
        if since >= q.status_every_s and (changed or since >= 10 * q.status_every_s):
            last_print[:] = [time.time(), stats.read]
            print(status_line(stats), file=sys.stderr, flush=True)

    try:
        if live is not None:
            live.start()
        stats = consumer.run(lambda: stop["requested"], on_batch, until_idle=until_idle)
    finally:
        if live is not None:
            live.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        store.close()
    why = "signal" if stop["requested"] else "idle"
    print(f"stopped ({why}): {status_line(stats, fresh=True)}", file=sys.stderr, flush=True)


def _check_store(cfg: Config) -> None:
    if cfg.store.kind == "memory":
        raise GenreError(
            "genre consume: store.kind = 'memory' keeps nothing; use 'embedded' or 'http' "
            f"(events go to store.interactions_path = {cfg.store.interactions_path})"
        )


def _print_start(cfg: Config, url: str, target: object) -> None:
    q = cfg.queue
    # Plain print: rich would wrap the long line.
    print(
        f"consuming {q.stream} (group {q.group}, consumer {q.consumer}) at "
        f"{url} into {target}; "
        f"dead letters -> {q.dead_letter}",
        file=sys.stderr,
        flush=True,
    )


def register(main_app: typer.Typer) -> None:
    main_app.command("consume")(consume)
