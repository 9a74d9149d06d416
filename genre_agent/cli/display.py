"""What ``genre recommend`` and ``genre demo`` print: the ranked table, the streamed
rationales and the trace line (moved from genre_agent.cli.main)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from genre_agent.cli.common import safe_json, safe_text, terminal_safe

err = Console(stderr=True)
out = Console()


def print_recommendation(result: Any, as_json: bool) -> None:
    # Every catalog and LLM string is shown as text (never rich markup) with control
    # characters escaped: a title must not be able to style, link or move the terminal.
    # Notes (why fewer items than asked) go to stderr, so --json stdout stays one document.
    for note in result.trace.notes:
        print(terminal_safe(f"note: {note}"), file=sys.stderr)
    if as_json:
        print(safe_json(result.model_dump_json(indent=2)))
        sys.stdout.flush()
        return
    out.print(table(result, with_rationales=True))
    print_trace(result)


def evidence_text(item: Any) -> str:
    """The evidence in a few words: the supporting liked items and shared attributes."""
    ev = item.evidence
    if ev is None:
        return ""
    parts = [f"like {s.title}" for s in ev.history]
    parts += ev.shared[:3]
    if ev.request:
        parts.append("asked: " + ", ".join(ev.request))
    return "; ".join(parts)


def why(item: Any) -> Any:
    why = safe_text(item.rationale or "")
    if item.unsupported_terms:
        terms = terminal_safe(", ".join(item.unsupported_terms))
        why.append(f"  (unsupported: {terms})", style="yellow")
    return why


def table(result: Any, with_rationales: bool) -> Table:
    table = Table(title=safe_text(f"Recommendations for user {result.user_id or '-'}"))
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("title", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("evidence", overflow="fold")
    if with_rationales:
        # Wrapped, never cut: a rationale is shown whole.
        table.add_column("rationale", overflow="fold")
    for item in result.items:
        score = "" if item.score is None else f"{item.score:.3f}"
        row: list[Any] = [str(item.rank), safe_text(item.item.id), safe_text(item.item.title)]
        row += [score, safe_text(evidence_text(item))]
        if with_rationales:
            row.append(why(item))
        table.add_row(*row)
    return table


def print_stream(events: Any) -> Any:
    """The ranked list at once, then the rationales in rank order as they arrive (one that
    finishes early waits for those ranked above it); returns the result."""
    first = next(events)
    result = first.recommendation
    for note in result.trace.notes:
        print(terminal_safe(f"note: {note}"), file=sys.stderr)
    out.print(table(result, with_rationales=False))
    ranks = [it.rank for it in result.items]
    arrived: dict[int, Any] = {}
    shown = 0  # rationales printed: those of ranks[:shown]

    def show(item: Any) -> None:
        line = safe_text(f"{item.rank}. {item.item.title}: ")
        line.append_text(why(item))
        out.print(line)

    for ev in events:
        if ev.kind == "rationale":
            arrived[ev.item.rank] = ev.item
            while shown < len(ranks) and ranks[shown] in arrived:
                show(arrived.pop(ranks[shown]))
                shown += 1
        elif ev.kind == "done":
            result = ev.recommendation
    for rank in sorted(arrived):  # ranks the stream never explained do not hold the rest
        show(arrived[rank])
    print_trace(result)
    return result


def print_trace(result: Any) -> None:
    tr = result.trace
    signals = ", ".join(f"{k} {w:g}" for k, w in tr.sources.items())
    by = (
        "popular (cold start: no history or query)"
        if tr.strategy == "popular"
        else tr.ranked_by or "-"
    )
    err.print(safe_text(f"ranked by {by}; candidates from {signals or '-'}"))
    timings = ", ".join(f"{t.stage} {t.seconds:.2f}s" for t in tr.timings)
    err.print(
        safe_text(
            f"model {tr.model_id} ({tr.engine}), template {tr.template} "
            f"{tr.template_sha256[:12]}, tokens {tr.prompt_tokens}+{tr.completion_tokens}, "
            f"repair rounds {tr.repair_rounds}, {timings}",
            style="dim",
        )
    )
