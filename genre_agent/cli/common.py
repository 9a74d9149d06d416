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


def progress_bar(*, info: bool = False) -> Any:
    """A rich progress bar on stderr with count, elapsed time and ETA (plus a text field)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, console=err)


class LabelledBars:
    """A progress callback ``(label, done, total[, info])``: one bar per label, made on first use.

    ``info`` (a name -> number mapping, e.g. the running loss) is shown after the ETA.
    Use as ``with bars.progress: ...``.
    """

    def __init__(self) -> None:
        self.progress = progress_bar(info=True)
        self.tasks: dict[str, Any] = {}

    def __call__(
        self, label: str, done: int, total: int, info: dict[str, float] | None = None
    ) -> None:
        text = "  ".join(f"{k} {v:.3f}" for k, v in (info or {}).items())
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total, completed=0, info=text)
        self.progress.update(self.tasks[label], completed=done, total=total, info=text)
