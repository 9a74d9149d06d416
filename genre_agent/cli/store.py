"""`genre store migrate`: bring the user-data stores to the schema this version needs."""

from __future__ import annotations

import typer

from genre_agent.cli.common import ConfigOpt, SetOpt, cli_config

store_app = typer.Typer(no_args_is_help=True, help="User-data stores (SQLite or PostgreSQL).")


@store_app.command("migrate")
def migrate(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Apply every pending schema migration (offline ones included: stop the workers
    first). Prints one line per store: the versions applied, or that it was current."""
    from genre_agent.storage.backends import backend_kind
    from genre_agent.storage.backends import migrate as run_migrations

    cfg = cli_config(config, set_)
    done = run_migrations(cfg)
    where = backend_kind(cfg)
    for component, versions in done.items():
        shown = ", ".join(f"v{v}" for v in versions) if versions else "already current"
        print(f"{component} ({where}): {shown}")
    if not done:
        print("no stores yet: they are made at the newest schema when first used")


def register(main_app: typer.Typer) -> None:
    main_app.add_typer(store_app, name="store")
