"""``genre chat``, ``genre profile show/edit/forget/build`` and ``genre enrich``.

Mounted into the main CLI by ``register(app)``; ``app`` is also usable on its own
(``python -m genre_agent.cli.chat chat``).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from genre_agent.cli.common import (
    STATE,
    ConfigOpt,
    SetOpt,
    announce,
    cli_config,
    describe_error,
    progress_bar,
    safe_json,
    safe_text,
    terminal_safe,
)
from genre_agent.config import Config
from genre_agent.errors import GenreError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Chat, profiles, enrichment.")
profile_app = typer.Typer(no_args_is_help=True, help="View, edit and forget user profiles.")
app.add_typer(profile_app, name="profile")
err = Console(stderr=True)

_config = cli_config
_announce = announce


def _recommender(cfg: Config) -> Any:
    from genre_agent.service.recommender import Recommender

    return Recommender.from_config(cfg, announce=_announce)


def _print_turn(turn: Any) -> None:
    # Plain print (not rich): piped output stays one line per pick, easy to read back.
    # Catalog and LLM text has its control characters escaped (no ANSI, no line breaks).
    if turn.error:
        print(f"(no picks: {terminal_safe(turn.error)})")
    for n, p in enumerate(turn.picks, start=1):
        why = f" - {terminal_safe(p.rationale)}" if p.rationale else ""
        print(f"  {n}. [{terminal_safe(p.id)}] {terminal_safe(p.title)}{why}")
    sys.stdout.flush()


def _user_history(rec: Any, user_id: str) -> tuple[list[Any], list[Any]]:
    rows = rec.interactions.history(user_id)
    known = rec.store.get([r.item_id for r in rows])
    cut = rec.config.retrieval.min_liked_rating
    liked = [known[r.item_id] for r in rows if r.item_id in known and (r.rating or cut) >= cut]
    low = [known[r.item_id] for r in rows if r.item_id in known and (r.rating or cut) < cut]
    return liked, low


@app.command()
def chat(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Resume this session id.")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Known user id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per turn.")] = False,
) -> None:
    """Chat REPL: one message per stdin line; /quit ends; the session id is printed first."""
    from genre_agent.service.chat import IntentError, SessionStore

    cfg = _config(config, set_)
    rec = _recommender(cfg)
    store = SessionStore.from_config(cfg)
    sess = _open_session(cfg, rec, store, session, user)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        message = line.strip()
        if not message:
            continue
        if message in {"/quit", "/exit"}:
            break
        try:
            turn = sess.send(message)
        except IntentError as exc:
            print(f"(could not understand that: {terminal_safe(exc)})")
            continue
        except Exception as exc:
            # An LLM server or store failure ends this turn, not the session.
            text = describe_error(exc, cfg)
            if text is None:
                raise
            if STATE.debug:
                traceback.print_exc()
            else:
                print(
                    f"error: {text} (this message got no answer; the session goes on)",
                    file=sys.stderr,
                )
            sys.stderr.flush()
            continue
        if as_json:
            print(safe_json(turn.model_dump_json()))
        else:
            _print_turn(turn)
    print(f"bye; resume with --session {sess.id}")
    store.close()
    rec.close()


def _open_session(cfg: Config, rec: Any, store: Any, session: str | None, user: str | None) -> Any:
    """Resume ``session`` or start one (with the user's stored profile when the config uses
    profiles); prints the session id first."""
    from genre_agent.service.chat import ChatSession
    from genre_agent.service.profiles import Profiles

    profile_text = None
    if user and (cfg.profile.use_in_retrieval or cfg.profile.use_in_rerank):
        stored = Profiles.from_config(cfg).get(user)
        profile_text = stored.profile.as_text() if stored else None
    if session:
        sess = ChatSession.resume(rec, store, session, profile=profile_text)
        print(f"session: {sess.id} (resumed, {len(sess.turns)} turns)")
    else:
        sess = ChatSession.start(rec, store, user_id=user, profile=profile_text)
        print(f"session: {sess.id}")
    sys.stdout.flush()
    return sess


@profile_app.command("show")
def profile_show(user: str, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the stored profile (JSON) and the items the user asked to forget."""
    from genre_agent.service.profiles import Profiles

    profiles = Profiles.from_config(_config(config, set_))
    rec = profiles.get(user)
    if rec is None:
        raise GenreError(f"no profile for user {user!r}; build one with `profile build`")
    data = rec.model_dump(mode="json", exclude={"raw_output"})
    data["forgotten"] = sorted(profiles.forgotten(user))
    print(json.dumps(data, indent=2))


@profile_app.command("build")
def profile_build(
    user: str,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
) -> None:
    """Build (or reuse) the user's profile from their stored interactions."""
    from genre_agent.service.profiles import Profiles

    cfg = _config(config, set_)
    rec = _recommender(cfg)
    liked, low = _user_history(rec, user)
    built = Profiles.from_config(cfg, llm=rec.llm).build(user, liked, low, force=force)
    print(json.dumps(built.model_dump(mode="json", exclude={"raw_output"}), indent=2))
    if built.violations:
        err.print(f"[yellow]{len(built.violations)} violation(s) in the LLM answer[/yellow]")


@profile_app.command("edit")
def profile_edit(
    user: str,
    file: Annotated[Path, typer.Option("--file", "-f", help="Profile JSON ('-' = stdin).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Replace the profile with a hand-edited JSON document."""
    from genre_agent.service.profiles import Profiles

    text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    edited = Profiles.from_config(_config(config, set_)).edit(user, text)
    print(json.dumps(edited.model_dump(mode="json", exclude={"raw_output"}), indent=2))


@profile_app.command("forget")
def profile_forget(
    user: str,
    item: Annotated[
        list[str] | None, typer.Option("--item", "-i", help="Forget only this item.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Forget items (evidence and future rebuilds), or the whole profile without --item."""
    from genre_agent.service.profiles import Profiles

    profiles = Profiles.from_config(_config(config, set_))
    if item:
        for i in item:
            profiles.forget_item(user, i)
        print(f"forgot {len(item)} item(s) for {user}")
    else:
        print("deleted" if profiles.forget_profile(user) else f"no profile for {user!r}")


@app.command()
def enrich(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N items.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="JSONL checkpoint file.")] = None,
) -> None:
    """LLM summaries + keywords for indexed items (resumable; needs enrich.enabled=true)."""
    from genre_agent.service.enrichment import Enricher

    cfg = _config(config, set_)
    if not cfg.enrich.enabled:
        raise GenreError("enrichment is off: set enrich.enabled=true (config or --set)")
    rec = _recommender(cfg)
    items = sorted(rec.store.all_items(), key=lambda it: it.id)
    items = [it for it in items if not it.metadata.get("enriched")][:limit]
    with progress_bar() as bar:
        task = bar.add_task("enriching", total=len(items))
        report = Enricher(rec.llm, cfg.enrich).run(
            items,
            store=rec.store,
            checkpoint=checkpoint,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    print(
        f"enriched {report.done}, from cache {report.cached}, skipped {report.skipped}, "
        f"invalid {len(report.invalid)}"
    )
    for bad in report.invalid[:10]:
        err.print(safe_text(f"  invalid answer for {bad['item_id']}: {bad['error']}"))


def register(main_app: typer.Typer) -> None:
    """Mount into the main ``genre`` app: ``chat``, ``enrich`` and the ``profile`` group."""
    main_app.command("chat")(chat)
    main_app.command("enrich")(enrich)
    main_app.add_typer(profile_app, name="profile")


def main() -> None:
    try:
        app(standalone_mode=False)
    except GenreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
