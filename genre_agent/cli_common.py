"""Options and helpers shared by the ``genre`` sub-commands (parsing only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from genre_agent.config import Config, load_config
from genre_agent.errors import GenreError

err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML/YAML config file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: llm.engine=fake (repeatable)."),
]


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["llm.engine=fake", "ranking.k=5"]`` -> ``{"llm.engine": "fake", "ranking.k": 5}``."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise GenreError(f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        try:
            result[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            result[key.strip()] = raw
    return result


def cli_config(path: Path | None, pairs: list[str] | None) -> Config:
    """Defaults < file < env < ``--set`` flags."""
    return load_config(path, overrides=parse_overrides(pairs))


def announce(msg: str) -> None:
    err.print(f"[dim]{msg}[/dim]")
