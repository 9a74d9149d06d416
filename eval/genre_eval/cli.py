"""``genre eval``: run experiments, write reports, search parameters (parses and prints only)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from genre_agent.cli.common import LabelledBars, parse_overrides
from genre_agent.errors import GenreError

app = typer.Typer(
    help="Offline evaluation: experiments, reports, parameter search.", no_args_is_help=True
)


_overrides = parse_overrides


def _release_engines() -> None:
    # A vLLM engine left to interpreter exit kept a finished run alive (and the model lock
    # held); shut engines down explicitly once the run is written.
    from genre_agent.llm import clear_engines

    clear_engines()


def _load(path: Path, users: int | None, max_history: int | None = None) -> Any:
    from genre_eval.experiment import Experiment, load_experiment

    exp = load_experiment(path)
    proto: dict[str, Any] = {}
    if users is not None:
        proto["users"] = users
    if max_history is not None:
        proto["max_history"] = max_history
    if proto:
        # Re-validated, so a bad value is the same clear error as in the file.
        data = exp.model_dump()
        data["protocol"] = {**data["protocol"], **proto}
        exp = Experiment.model_validate(data)
    return exp


Sets = Annotated[list[str] | None, typer.Option("--set", help="config override key=value")]


@app.command()
def run(
    experiment: Annotated[Path, typer.Argument(help="experiment TOML/YAML")],
    out: Annotated[Path | None, typer.Option(help="run directory (resumed if it exists)")] = None,
    users: Annotated[int | None, typer.Option(help="override protocol.users")] = None,
    max_history: Annotated[
        int | None,
        typer.Option(
            min=1, help="override protocol.max_history: keep each user's last N interactions"
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="valid or test")] = None,
    only: Annotated[list[str] | None, typer.Option(help="run only these systems")] = None,
    cache: Annotated[Path | None, typer.Option(help="LLM cache file (replay)")] = None,
    sets: Sets = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Run baselines and prompt variants; write results.jsonl, summary.json and the report."""
    from genre_eval.datasets import DatasetWarning
    from genre_eval.report import write_report
    from genre_eval.runner import Runner
    from genre_eval.summary import summarize_prepared

    exp = _load(experiment, users, max_history)
    if only:
        known = [*exp.baselines, *(v.name for v in exp.variants)]
        unknown = [name for name in only if name not in known]
        if unknown:
            raise GenreError(f"--only: {unknown} not in {experiment}; known: {known}")
        exp = exp.model_copy(
            update={
                "baselines": [b for b in exp.baselines if b in only],
                "variants": [v for v in exp.variants if v.name in only],
            }
        )
    out_dir = out or Path("runs") / exp.name
    bar = LabelledBars() if progress else None
    with warnings.catch_warnings():
        # Printed below, once and plainly; manifest.json records them too.
        warnings.simplefilter("ignore", DatasetWarning)
        runner = Runner(exp, out_dir, _overrides(sets), progress=bar, split=split, cache_path=cache)
    for note in runner.prepared.ds.warnings:
        typer.echo(f"warning: {note}", err=True)
    try:
        if bar:
            with bar.progress:
                runner.run()
        else:
            runner.run()
    finally:
        _release_engines()
    summary = summarize_prepared(out_dir, runner.prepared)
    md, html = write_report(out_dir)
    if runner.prepared.eligibility is not None:
        typer.echo(runner.prepared.eligibility.describe())
    _print_summary(summary)
    typer.echo(f"wrote {out_dir / 'results.jsonl'}, {md}, {html}")


def _print_summary(summary: dict[str, Any]) -> None:
    primary = summary["primary"]
    typer.echo(f"{summary['users']} users, split {summary['split']}, metric {primary}")
    for name, e in summary["systems"].items():
        m = e["metrics"][primary]
        upm = e.get("users_per_min")
        if e["kind"] != "llm":  # no speed for baselines (summary.py)
            speed = "users/min -"
        else:
            speed = "replayed from cache" if upm is None else f"users/min {upm:.1f}"
        typer.echo(
            f"  {name:14s} {m['mean']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"
            f"  fail {e['failure_rate']:.3f}  {speed}"
        )


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory with summary.json")],
    out: Annotated[Path | None, typer.Option(help="where to write report.md/html")] = None,
) -> None:
    """Write report.md and a self-contained report.html for a finished run."""
    from genre_eval.report import write_report

    if not (run_dir / "summary.json").exists():
        raise GenreError(f"{run_dir}: no summary.json; run `genre eval run` first")
    md, html = write_report(run_dir, out)
    typer.echo(f"wrote {md} and {html}")


@app.command("segments")
def segments_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories on the same data")],
    at: Annotated[
        list[int] | None, typer.Option("--at", help="history-length threshold (repeatable)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="where to write segments.json/.md")] = None,
) -> None:
    """Pool runs (e.g. with and without --max-history 5) and split every system's metrics by
    the users' visible history length, with paired CIs per group."""
    from genre_eval.report import segments_markdown
    from genre_eval.summary import summarize_segments

    for d in run_dirs:
        if not (d / "manifest.json").exists():
            raise GenreError(f"{d}: no manifest.json; run `genre eval run` first")
    dest = out or run_dirs[0]
    seg = summarize_segments(list(run_dirs), sorted(set(at or [5])), dest)
    runs = ", ".join(f"{r['dir']} (max_history {r['max_history']})" for r in seg["runs"])
    md = f"# Segments: {runs}\n\n" + segments_markdown(seg, seg["primary"]) + "\n"
    (dest / "segments.md").write_text(md, encoding="utf-8")
    typer.echo(md)
    typer.echo(f"wrote {dest / 'segments.json'} and {dest / 'segments.md'}")


@app.command("search")
def search_cmd(
    experiment: Annotated[Path, typer.Argument(help="experiment TOML/YAML")],
    variant: Annotated[str | None, typer.Option(help="variant to tune (default: first)")] = None,
    trials: Annotated[int, typer.Option(min=1)] = 10,
    sampler: Annotated[str, typer.Option(help="tpe or random")] = "tpe",
    out: Annotated[Path | None, typer.Option(help="search directory")] = None,
    users: Annotated[int | None, typer.Option(help="override protocol.users")] = None,
    space: Annotated[
        list[str] | None,
        typer.Option(
            help="search bounds KEY=LO,HI (history_len, temperature, fusion_weight, k, "
            "source.NAME for a retrieval source weight) or templates=a,b / "
            "modes=retrieval,scoring,listwise; one value fixes the knob. Defaults: "
            "history_len=5,40, fusion_weight=0,1, temperature=0, k=10, the variant's "
            "template, mode and sources"
        ),
    ] = None,
    sets: Sets = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="LLM answer cache (default: <out>/llm_cache.sqlite); share a run's cache "
            "so its answers replay instead of being recomputed"
        ),
    ] = None,
) -> None:
    """Tune knobs on the validation split, score the best once on test, write its config."""
    from genre_eval.experiment import VariantSpec
    from genre_eval.search import parse_space, search

    if sampler not in {"tpe", "random"}:
        raise typer.BadParameter("--sampler must be tpe or random")
    exp = _load(experiment, users)
    names = [v.name for v in exp.variants]
    if variant is not None and variant not in names:
        raise GenreError(f"--variant {variant!r} not in {experiment}; known: {names}")
    base = next((v for v in exp.variants if v.name == variant), None) if variant else None
    if base is None:
        base = exp.variants[0] if exp.variants else VariantSpec(name="base")
    try:
        result = search(
            exp,
            out or Path("runs") / f"{exp.name}-search",
            base,
            trials,
            sampler,  # type: ignore[arg-type]
            space=parse_space(space or []),
            overrides=_overrides(sets),
            cache_path=cache,
        )
    finally:
        _release_engines()
    typer.echo(
        f"best valid {result['primary']} = {result['best']['valid']:.4f} "
        f"params {result['best']['params']}"
    )
    typer.echo(f"test {result['primary']} = {result['test']:.4f}; config {result['best_config']}")


@app.command("chat")
def chat_cmd(
    benchmark: Annotated[
        Path, typer.Argument(help="chat benchmark TOML (eval/experiments/chat_*)")
    ],
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/<name>)")] = None,
    only: Annotated[list[str] | None, typer.Option(help="run only these variants")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="first N cases of each part (a stated subset)")
    ] = None,
    part: Annotated[
        list[str] | None, typer.Option(help="only these parts (template, hand, hand-holdout)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="concurrent sessions")] = 1,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="only rebuild the report from <out>")
    ] = False,
    sets: Sets = None,
) -> None:
    """Chat understanding: run variants over the benchmark; write <out>/report.md."""
    from genre_eval.chat_bench_run import load_spec, run_bench, write_report

    spec = load_spec(benchmark)
    out_dir = out or Path("runs") / spec.name
    if not report_only:
        try:
            run_bench(
                spec,
                out_dir,
                only=only or [],
                limit=limit,
                parts=part or [],
                workers=workers,
                overrides=_overrides(sets),
                echo=typer.echo,
            )
        finally:
            _release_engines()
    md, _ = write_report(out_dir, spec)
    typer.echo(md.read_text(encoding="utf-8"))
    typer.echo(f"wrote {md}")


@app.command("online")
def online_cmd(
    experiment: Annotated[Path, typer.Argument(help="experiment TOML/YAML (its data and config)")],
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/online-<name>)")
    ] = None,
    users: Annotated[int | None, typer.Option(help="override protocol.users")] = None,
    n: Annotated[
        list[int] | None, typer.Option("--n", help="user counts of the power curve")
    ] = None,
    resamples: Annotated[int, typer.Option(min=1, help="runs per user count")] = 100,
    aa_runs: Annotated[int, typer.Option(min=1, help="A/A runs per experiment kind")] = 200,
    sets: Sets = None,
) -> None:
    """Simulated online experiments (default against popularity alone): A/B and
    interleaving reports, users needed, the A/A false-positive rate (docs/experiments.md)."""
    from genre_eval.online_run import DEFAULT_NS, markdown, run_online

    exp = _load(experiment, users)
    out_dir = out or Path("runs") / f"online-{exp.name}"
    try:
        result = run_online(
            exp,
            out_dir,
            ns=n or DEFAULT_NS,
            resamples=resamples,
            aa_runs=aa_runs,
            overrides=_overrides(sets),
            echo=typer.echo,
        )
    finally:
        _release_engines()
    typer.echo(markdown(result))
    typer.echo(f"wrote {out_dir / 'summary.json'} and {out_dir / 'table.md'}")


def register(main_app: typer.Typer) -> None:
    """Add ``genre eval`` to the main CLI (entry point group "genre_agent.commands")."""
    main_app.add_typer(app, name="eval")
