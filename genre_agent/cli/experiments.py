"""`genre experiments`: list the configured online experiments and print their reports."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from genre_agent.cli.common import ConfigOpt, SetOpt, cli_config, safe_text

experiments_app = typer.Typer(
    no_args_is_help=True, help="Online experiments (service.experiments, docs/experiments.md)."
)


def _ci(value: float, ci: tuple[float, float] | list[float]) -> str:
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"


@experiments_app.command("list")
def list_cmd(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """The experiments of service.experiments, in order."""
    cfg = cli_config(config, set_)
    for e in cfg.service.experiments:
        state = "" if e.enabled else " (disabled)"
        print(f"{e.name}: {e.kind}{state}, variants {', '.join(v.name for v in e.variants)}")


@experiments_app.command("report")
def report_cmd(
    name: Annotated[str, typer.Argument(help="an experiment of service.experiments")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Per variant: users, exposures, positives per impression and MRR of the first positive
    (95% bootstrap CIs over users), LLM cost; the test between variants; warnings."""
    from genre_agent.experiments.readout import load_report
    from genre_agent.storage.backends import open_exposures, open_interactions

    cfg = cli_config(config, set_)
    interactions = open_interactions(cfg)
    try:
        report = load_report(cfg, open_exposures(cfg, interactions), name)
    finally:
        interactions.close()
    if as_json:
        print(report.model_dump_json(indent=2))
        return
    out = Console()
    table = Table(title=safe_text(f"Experiment {report.experiment} ({report.kind})"))
    for col in ("variant", "users", "exposures", "rate", "MRR", "LLM tokens", "LLM s"):
        table.add_column(col)
    for v in report.variants:
        table.add_row(
            safe_text(v.name),
            str(v.users),
            str(v.exposures),
            _ci(v.rate, v.rate_ci),
            _ci(v.mrr, v.mrr_ci),
            str(v.llm_tokens),
            f"{v.llm_seconds:.1f}",
        )
    out.print(table)
    t = report.test
    favours = t.favours if t.favours is not None else "neither (p >= alpha)"
    out.print(
        safe_text(f"{t.name}: statistic {t.statistic:.4f}, p = {t.p_value:.4g}; favours {favours}")
    )
    for w in report.warnings:
        out.print(safe_text(f"warning: {w}", "yellow"))


def register(main_app: typer.Typer) -> None:
    main_app.add_typer(experiments_app, name="experiments")
