"""``genre tune``: LoRA-tune the scoring ranker on a catalog's interactions (parses and prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genre_agent.cli.common import LabelledBars, parse_overrides
from genre_agent.errors import GenreError


def tune(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML/YAML config.")] = None,
    data: Annotated[Path | None, typer.Option(help="interactions directory (tune.data)")] = None,
    out: Annotated[Path | None, typer.Option(help="output directory (tune.out_dir)")] = None,
    sets: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="config override key=value")
    ] = None,
    resume: Annotated[bool, typer.Option(help="resume from out/checkpoint")] = True,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Fine-tune a LoRA adapter for scoring mode, then merge it into a servable checkpoint."""
    from genre_agent.config import load_config
    from genre_eval.tuning import Tuner

    overrides = parse_overrides(sets)
    if data is not None:
        overrides["tune.data"] = str(data)
    if out is not None:
        overrides["tune.out_dir"] = str(out)
    cfg = load_config(config, overrides=overrides)
    bar = LabelledBars() if progress else None
    tuner = Tuner(cfg, progress=bar, announce=lambda m: typer.echo(m, err=True))
    if bar:
        with bar.progress:
            prov = tuner.train(resume=resume)
    else:
        prov = tuner.train(resume=resume)
    typer.echo(
        f"{prov['examples']} examples, {prov['steps']} steps in {prov['train_seconds']:.0f}s; "
        f"loss {prov['loss_first_10pct']:.3f} -> {prov['loss_last_10pct']:.3f}"
    )
    merged = Path(cfg.tune.out_dir) / "merged"
    if cfg.tune.merge:
        typer.echo(f'serve it with: llm.model = "{merged.resolve()}"')


def register(main_app: typer.Typer) -> None:
    """Add ``genre tune`` to the main CLI."""
    main_app.command("tune")(tune)


__all__ = ["GenreError", "register", "tune"]
