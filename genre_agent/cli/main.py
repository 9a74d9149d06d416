"""The ``genre`` command line: parses, calls the service, prints. Nothing else."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from genre_agent.cli.common import (
    STATE,
    ConfigOpt,
    SetOpt,
    announce,
    check_k,
    cli_config,
    describe_error,
    parse_overrides,
    progress_bar,
    quiet_libraries,
    safe_text,
    terminal_safe,
    usage_error,
)
from genre_agent.cli.display import (
    err,
    print_recommendation,
    print_stream,
)
from genre_agent.cli.models import models_app
from genre_agent.cli.serve import serve
from genre_agent.config import Config
from genre_agent.errors import GenreError

# No local variables in a bug's traceback: they can hold an API key or a user's history.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="GENRE: LLM recommender.",
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("genre-agent")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from genre_agent import __version__ as number
        print(f"genre {number}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="On an error, print the full traceback.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show the log lines of vLLM, transformers and torch."),
    ] = False,
    _version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_show_version, help="Print the version."),
    ] = False,
) -> None:
    STATE.debug = debug
    quiet_libraries(verbose)


app.add_typer(models_app, name="models")

_overrides = parse_overrides
_config = cli_config


_progress = progress_bar

_announce = announce

# The stream printer's old name (tests import it from here).
_print_stream = print_stream


def _recommender(cfg: Config) -> Any:
    from genre_agent.service.recommender import Recommender

    return Recommender.from_config(cfg, announce=_announce)


def _index(cfg: Config, catalog: Path, interactions: Path | None) -> Any:
    """Validate everything first, then open the store and upsert: a bad file writes nothing."""
    from genre_agent.catalog.items import load_items
    from genre_agent.ranking import needs
    from genre_agent.storage.interactions import read_interactions

    items = load_items(catalog)
    rows = read_interactions(interactions) if interactions is not None else None
    err.print(safe_text(f"loaded {len(items)} valid items from {catalog}"))
    rec = _recommender(cfg)
    with _progress() as bar:
        task = bar.add_task("embedding + indexing", total=len(items))
        report = rec.index(items, progress=lambda done, total: bar.update(task, completed=done))
    err.print(
        f"index: {report.added} added, {report.updated} updated, {report.unchanged} unchanged "
        f"({rec.store.count()} in collection)"
    )
    if rows is not None:
        rec.add_interactions(rows)
        err.print(safe_text(f"interactions: {len(rows)} rows from {interactions}"))
        _fit(rec)
        if needs(rec.config).learned_model:  # the served ranker needs its model too
            _fit_ranker(rec)
    return rec


def _fit(rec: Any, kinds: list[str] | None = None) -> None:
    """Refit the interaction-trained sources and say where they went."""
    from genre_agent.service.fit import kinds_to_fit

    todo = kinds or kinds_to_fit(rec.config)
    reports = []
    for kind in todo:
        with _progress() as bar:
            task = bar.add_task(f"fitting {kind}", total=None)
            reports += rec.fit([kind])
            bar.update(task, total=1, completed=1)
    for r in reports:
        p = r.provenance
        err.print(
            f"fit {r.kind}: {p['interactions']} interactions, {p['users']} users, "
            f"{p['items']} items -> {r.path} (data sha256 {p['data_sha256'][:12]})"
        )


@app.command()
def index(
    catalog: Annotated[
        Path, typer.Argument(help="Items: .jsonl/.csv/.parquet or a MovieLens dir.")
    ],
    interactions: Annotated[
        Path | None, typer.Option(help="user,item[,timestamp,rating] CSV/JSONL or ratings.csv.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Validate a catalog and upsert it into Chroma (idempotent; rerun after a kill)."""
    _index(_config(config, set_), catalog, interactions)


@app.command()
def fit(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Fit only this source (repeatable): itemknn, als, ..."),
    ] = None,
    ranker: Annotated[
        bool,
        typer.Option(
            "--ranker",
            help="Train the learned ranker (ranking.mode = 'learned') instead: each user's "
            "last interaction is its target; saved under models/ranker/.",
        ),
    ] = False,
) -> None:
    """Fit the sources that learn from stored interactions, with provenance.

    By default: item-kNN (it also gives rationales their evidence) and every other fitted
    source with a weight > 0 in retrieval.sources. `genre index --interactions` and
    `genre demo` run this for you; run it again after adding interactions by other means.
    Popularity counts new interactions without a refit. With --ranker: train the learned
    ranker (its sources are fitted in memory, without the users' last interactions), plus
    the --source ones if given.
    """
    rec = _recommender(_config(config, set_))
    if source or not ranker:
        _fit(rec, source)
    if ranker:
        _fit_ranker(rec)


def _fit_ranker(rec: Any) -> None:
    from genre_agent.service.learn import fit_ranker

    with _progress() as bar:
        task = bar.add_task("training the learned ranker (users)", total=None)
        report = fit_ranker(rec, lambda done, total: bar.update(task, total=total, completed=done))
    p = report.provenance
    err.print(
        f"fit ranker: {p['groups']} users ({p['rows']} candidates, "
        f"{p['targets_retrieved']} targets retrieved), {len(p['features'])} features, "
        f"{p['fit_seconds']}s -> {report.path}"
    )


@app.command()
def recommend(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="User id with stored history.")
    ] = None,
    history: Annotated[
        str | None, typer.Option(help="Comma-separated item ids the user liked (oldest first).")
    ] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Free-text request.")] = None,
    k: Annotated[int | None, typer.Option("-k", help="How many items.")] = None,
    where: Annotated[
        str | None,
        typer.Option(help='Chroma metadata filter as JSON, e.g. {"year": {"$gte": 2000}}'),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Rank items for a user, a history and/or a query, with rationales."""
    cfg = _config(config, set_)
    check_k(k)
    filters = None
    if where:
        try:
            filters = json.loads(where)
        except json.JSONDecodeError as exc:
            raise GenreError(f"--where: not valid JSON: {exc}") from None
    rec = _recommender(cfg)
    hist = [h.strip() for h in history.split(",") if h.strip()] if history else None
    args: dict[str, Any] = dict(user_id=user, history=hist, query=query, k=k, filters=filters)
    if as_json:
        result = rec.recommend(**args)
    else:
        result = print_stream(rec.recommend_stream(**args))
    if result.trace.strategy != "personal":
        # Cold start is the service's rule (config `cold`); say which fallback answered.
        n = len(rec.interactions.history(user)) if user and hist is None else len(hist or [])
        err.print(
            safe_text(
                f"cold start: strategy {result.trace.strategy} ({n} stored interactions)", "dim"
            )
        )
        if result.trace.strategy == "few" and result.trace.profile:
            err.print(safe_text(f"profile: {result.trace.profile}", "dim"))
    if not as_json:
        return
    print_recommendation(result, as_json)
    # On stderr, so --json output stays one JSON document.


def _demo_data() -> Path | None:
    for cand in (
        os.environ.get("GENRE_DEMO_DATA"),
        "../shared/data/ml-latest-small",
        "shared/data/ml-latest-small",
    ):
        if cand and (Path(cand) / "movies.csv").exists():
            return Path(cand)
    return None


@app.command()
def demo(
    data: Annotated[
        Path | None,
        typer.Option(help="MovieLens directory (default: ../shared/data/ml-latest-small)."),
    ] = None,
    user: Annotated[str, typer.Option("--user", "-u")] = "1",
    k: Annotated[int, typer.Option("-k")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Index MovieLens (movies, tags, ratings) and recommend for a sample user."""
    check_k(k)
    data = data or _demo_data()
    if data is None:
        raise GenreError(
            "no MovieLens data found: pass --data DIR or set GENRE_DEMO_DATA "
            "(ml-latest-small is research-only licensed and not shipped in this repo)"
        )
    rec = _index(_config(config, set_), data, data / "ratings.csv")
    result = rec.recommend(user_id=user, k=k)
    print_recommendation(result, as_json)
    seen = {r.item_id for r in rec.interactions.history(user)}
    ids = [it.item.id for it in result.items]
    problems = []
    if len(ids) != k or len(set(ids)) != len(ids):
        problems.append(f"expected {k} distinct items, got {ids}")
    if seen & set(ids):
        problems.append(f"items from the user's history: {sorted(seen & set(ids))}")
    if any(not (it.rationale or "").strip() for it in result.items):
        problems.append("an item has an empty rationale")
    if problems:
        raise GenreError("demo check failed: " + "; ".join(problems))
    err.print(safe_text(f"demo ok: {k} distinct items, none from user {user}'s history", "green"))


# ``genre serve`` lives in genre_agent.cli.serve; registered here, after ``demo``, so
# ``genre --help`` lists the commands in the order they always had.
app.command()(serve)


# Command groups outside this module. The core's own come from an explicit import; the
# harness (``genre eval``, ``genre tune``) plugs in through the "genre_agent.commands" entry
# point group declared in pyproject.toml, so the core never imports ``genre_eval``.
COMMAND_GROUP = "genre_agent.commands"


def _mount_commands() -> None:
    from importlib.metadata import entry_points

    from genre_agent.cli import chat, consume, experiments, store, worker

    for group in (chat, consume, experiments, store, worker):
        group.register(app)
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        ep.load()(app)


_mount_commands()


def run(args: list[str] | None = None) -> int:
    """Run one ``genre`` command line; return its exit code.

    A usage error (unknown option or command, a missing value) prints ``error: <what>
    (usage: <the command's usage line>)``, one line, and exits 2. A GenreError or an
    LLM/HTTP server error prints ``error: <cause>`` (exit 2). With ``--debug`` both print the
    full traceback instead. Any other exception is a bug and propagates.
    """
    STATE.debug, STATE.config = False, None
    argv = sys.argv[1:] if args is None else list(args)
    code = 0
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="genre")
        code = rc if isinstance(rc, int) else 0
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except typer.Exit as exc:
        code = exc.exit_code
    except Exception as exc:
        usage = usage_error(exc, _context_for(argv))
        if usage is not None:  # a bad option, command or value: one line, exit 2
            message, code = usage
            if STATE.debug or _debug_flag(argv):
                traceback.print_exc()
            elif message:
                print(f"error: {terminal_safe(message)}", file=sys.stderr)
            return code
        described = describe_error(exc, STATE.config)
        if described is None:
            raise
        if STATE.debug:
            traceback.print_exc()
        else:
            # Plain print: rich would wrap long file paths and break "file:line: field" lines.
            print(f"error: {described}", file=sys.stderr)
        code = 2
    finally:
        # Shut vLLM down explicitly: left to interpreter exit, its engine process can hang.
        from genre_agent.llm.registry import clear_engines

        clear_engines()
    return code


def _context_for(argv: list[str]) -> Any:
    """A click context for the (sub)command ``argv`` names, for its usage line."""
    from typer.main import get_command

    try:
        cmd: Any = get_command(app)
        ctx = cmd.context_class(cmd, info_name="genre")
        for arg in argv:
            if arg.startswith("-"):
                continue  # the groups' own options take no value
            sub = cmd.get_command(ctx, arg) if hasattr(cmd, "get_command") else None
            if sub is None:
                break
            cmd, ctx = sub, sub.context_class(sub, info_name=arg, parent=ctx)
        return ctx
    except Exception:  # noqa: BLE001  (only the usage line is lost)
        return None


def _debug_flag(argv: list[str]) -> bool:
    """Whether ``--debug`` came before the command: a usage error in the global options
    stops parsing before the callback that records it runs."""
    for arg in argv:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def main() -> None:
    import signal

    # SIGTERM unwinds like Ctrl-C, so the engine shutdown in run() still runs and no vLLM
    # engine process is orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(run())


if __name__ == "__main__":
    main()
