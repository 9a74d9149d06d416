"""Markdown and self-contained HTML reports (plots inlined as base64 PNG) from summary.json."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from genre_eval.protocols import ties_line


def _fmt(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _ci(m: dict[str, float]) -> str:
    return f"{m['mean']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per system, metrics with 95% CIs, rates and cost."""
    ks = summary["ks"]
    metrics = [f"ndcg@{k}" for k in ks] + [f"hr@{k}" for k in ks] + [f"mrr@{max(ks)}", "auc"]
    extra = [
        f"coverage@{max(ks)}",
        "failure_rate",
        "latency_s_mean",
        "users_per_min",
        "cache_hit_rate",
        "prompt_tokens_per_request",
        "completion_tokens_per_request",
    ]
    recall = any("candidate_recall" in e for e in summary["systems"].values())
    header = ["system", "kind", "users", *metrics]
    header += [f"candidate recall@{summary.get('n_candidates', 'N')}"] if recall else []
    header += extra
    rows = []
    for name, e in summary["systems"].items():
        row = [name, e["kind"], str(e["users"])]
        row += [_ci(e["metrics"][m]) for m in metrics]
        row += [_ci(e["candidate_recall"]) if "candidate_recall" in e else ""] if recall else []
        row += [_fmt(e.get(x), 2 if "tokens" in x or "per_min" in x else 4) for x in extra]
        if e["kind"] != "llm":  # baselines have no speed (summary.py)
            row[len(row) - len(extra) + extra.index("users_per_min")] = "-"
        rows.append(row)
    return header, rows


def comparison_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    primary = summary["primary"]
    header = ["A", "B", "metric", "users", "mean(A-B)", "95% CI", "p (perm.)"]
    rows = [
        [
            c["a"],
            c["b"],
            c["metric"],
            str(c["users"]),
            f"{c['diff']:+.4f}",
            f"[{c['low']:+.4f}, {c['high']:+.4f}]",
            f"{c['p']:.4f}",
        ]
        for c in summary["comparisons"]
        if c["metric"] in {primary, "auc"} or c["metric"].startswith("hr@")
    ]
    return header, rows


# Row labels of the Explanations table, in order (keys of summary.explanations.metrics).
EXPLANATION_ROWS = (
    ("grounding_rate", "grounding rate (cites in history, no unsupported genre)"),
    ("unsupported_rate", "unsupported-term rate"),
    ("truncation_rate", "truncation rate (no final . ! ?)"),
    ("truncated_attempt_rate", "truncated attempts / attempts"),
    ("specificity", "specificity (names a history title or shared attribute)"),
    ("distinct_2", "distinct-2 (per user)"),
    ("duplicate_share", "duplicate rationales (share)"),
    ("template_rate", "template-reducible (a format string writes it word for word)"),
    ("weak_link_rate", "weak link (only a decade or one broad genre)"),
    ("grounded_facts", "grounded facts per rationale (mean)"),
    ("unsupported_claim_rate", "unsupported claims (widened check, lower case included)"),
    ("grammar_fault_rate", "grammar faults (rule check)"),
    ("prompt_speak_rate", 'prompt speak ("the user", "recommended")'),
    ("markup_rate", "markup or placeholders"),
    ("self_likening_rate", "likens the item to itself"),
    ("cf_drop_cited", "counterfactual rank drop: cited removed"),
    ("cf_drop_random", "counterfactual rank drop: random removed"),
    ("cf_drop_cited_minus_random", "counterfactual: cited - random (paired)"),
)


def explanation_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Rows = explanation metrics, columns = the systems with rationales (two prompt
    configurations side by side); each cell mean [95% CI]. None when no system has any."""
    names = [n for n, e in summary["systems"].items() if e.get("explanations")]
    if not names:
        return None
    blocks = [summary["systems"][n]["explanations"] for n in names]
    rows = [["rationales (n)", *(str(b["rationales"]) for b in blocks)]]
    rows.append(["users", *(str(b["users"]) for b in blocks)])
    for key, label in EXPLANATION_ROWS:
        cells = [_ci(b["metrics"][key]) if key in b["metrics"] else "-" for b in blocks]
        rows.append([label, *cells])
    return ["metric", *names], rows


def segment_tables(
    seg: dict[str, Any], primary: str
) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the per-group tables: ``primary`` with its 95% CI per system
    and group, then each paired comparison per group."""
    groups = seg["groups"]
    heads = [f"{g['label']} (n={g['users']})" for g in groups]
    names = list(dict.fromkeys(n for g in groups for n in g["systems"]))
    kinds = {n: e["kind"] for g in groups for n, e in g["systems"].items()}
    rows = []
    for n in names:
        row = [n, kinds[n]]
        for g in groups:
            e = g["systems"].get(n)
            row.append(_ci(e["metrics"][primary]) + f" ({e['users']})" if e else "")
        rows.append(row)
    pairs = list(dict.fromkeys((c["a"], c["b"]) for g in groups for c in g["comparisons"]))
    crows = []
    for a, b in pairs:
        row = [a, b]
        for g in groups:
            c = next((c for c in g["comparisons"] if (c["a"], c["b"]) == (a, b)), None)
            row.append(
                f"{c['diff']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] p={c['p']:.3f}"
                if c and c["users"]
                else ""
            )
        crows.append(row)
    by = "visible history length"
    return [
        (f"{primary} by {by} (mean [95% bootstrap CI] (users))", ["system", "kind", *heads], rows),
        (
            f"Paired differences on {primary} by {by} (mean(A - B) [95% CI], permutation p)",
            ["A", "B", *heads],
            crows,
        ),
    ]


def segments_markdown(seg: dict[str, Any], primary: str, level: str = "##") -> str:
    parts = []
    for title, header, rows in segment_tables(seg, primary):
        parts += [f"{level} {title}", _md_table(header, rows)]
    return "\n\n".join(parts)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(summary: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: NDCG@k bars with CI whiskers; latency vs quality scatter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = summary["systems"]
    names = list(systems)
    ks = summary["ks"]
    out = {}
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    width = 0.8 / len(ks)
    for j, k in enumerate(ks):
        ms = [systems[n]["metrics"][f"ndcg@{k}"] for n in names]
        xs = [i + j * width for i in range(len(names))]
        err = [[m["mean"] - m["low"] for m in ms], [m["high"] - m["mean"] for m in ms]]
        ax.bar(xs, [m["mean"] for m in ms], width, yerr=err, capsize=3, label=f"NDCG@{k}")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel("NDCG (95% bootstrap CI)")
    ax.legend()
    out["ndcg"] = _png(fig)
    plt.close(fig)
    primary = summary["primary"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        e = systems[n]
        if e.get("latency_s_mean") is None:  # replayed from the cache: no timing to plot
            continue
        lat = max(e["latency_s_mean"], 1e-6)
        ax.scatter(
            [lat], [e["metrics"][primary]["mean"]], marker="o" if e["kind"] == "llm" else "s"
        )
        ax.annotate(n, (lat, e["metrics"][primary]["mean"]), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("latency per user (s, log)")
    ax.set_ylabel(primary)
    out["latency"] = _png(fig)
    plt.close(fig)
    return out


def _provenance(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"dataset {summary['dataset']['name']}: sha256 {summary['dataset']['sha256']}",
        f"split {summary['split']}, {summary['users']} users",
        ties_line(summary.get("eligibility")),
    ]
    if summary.get("retriever_recall") is not None:
        lines.append(f"two-stage retriever recall@N: {summary['retriever_recall']:.4f}")
    for name, e in summary["systems"].items():
        if e["kind"] == "llm":
            lines.append(
                f"{name}: model {e['model_id']} rev {e['model_revision']}, template "
                f"sha256 {e['template_sha256']}, config sha256 {e['config_sha256']}"
            )
    return lines


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """report.md and report.html (self-contained) next to summary.json, or in ``out_dir``."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    dest = Path(out_dir) if out_dir else run_dir
    dest.mkdir(parents=True, exist_ok=True)
    header, rows = table_rows(summary)
    cheader, crows = comparison_rows(summary)
    prov = _provenance(summary)
    seg = summary.get("segments")
    expl = explanation_table(summary)
    expl_title = "Explanations (mean [95% bootstrap CI] over users)"
    md = (
        "\n\n".join(
            [
                f"# Evaluation report: {run_dir.name}",
                "\n".join(f"- {p}" for p in prov),
                "## Metrics (mean [95% bootstrap CI])",
                _md_table(header, rows),
                "## Paired comparisons (bootstrap CI of the difference, permutation p)",
                _md_table(cheader, crows),
                *([f"## {expl_title}", _md_table(*expl)] if expl else []),
                *([segments_markdown(summary["segments"], summary["primary"])] if seg else []),
            ]
        )
        + "\n"
    )
    md_path = dest / "report.md"
    md_path.write_text(md, encoding="utf-8")
    imgs = plots(summary)

    def h_table(hd: list[str], rs: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(x)}</th>" for x in hd)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rs
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + html.escape(run_dir.name)
        + "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>"
        + f"<h1>Evaluation report: {html.escape(run_dir.name)}</h1><ul>"
        + "".join(f"<li>{html.escape(p)}</li>" for p in prov)
        + "</ul>"
        + "<h2>Metrics (mean [95% bootstrap CI])</h2>"
        + h_table(header, rows)
        + f"<h2>NDCG@k</h2><img alt='ndcg' src='data:image/png;base64,{imgs['ndcg']}'>"
        + "<h2>Latency vs quality</h2>"
        + f"<img alt='latency' src='data:image/png;base64,{imgs['latency']}'>"
        + "<h2>Paired comparisons</h2>"
        + h_table(cheader, crows)
        + (f"<h2>{html.escape(expl_title)}</h2>" + h_table(*expl) if expl else "")
        + "".join(
            f"<h2>{html.escape(title)}</h2>" + h_table(hd, rs)
            for title, hd, rs in (segment_tables(seg, summary["primary"]) if seg else [])
        )
        + "</body></html>"
    )
    html_path = dest / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return md_path, html_path
