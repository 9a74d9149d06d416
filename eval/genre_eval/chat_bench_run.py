"""``genre eval chat``: run chat variants over the benchmark, score them, write the report.

Every variant is a config (``chat.intent``, ``llm.model``, ...) over one world (the dataset's
catalog in Chroma, its training interactions); each case is a fresh
:class:`~genre_agent.service.chat.ChatSession`, so the harness runs exactly what serving
runs. Per variant the turns go to ``<out>/<variant>.jsonl``; the report is made from every
variant file in ``<out>``, so LLM variants can run later (under the machine's LLM lock) and
join the same report.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.catalog.items import Item
from genre_agent.config import load_config
from genre_agent.errors import GenreError
from genre_agent.service.chat import ChatSession, IntentError, SessionState, SessionStore, Turn
from genre_eval.chat_bench import (
    RELATIVE,
    SLOTS,
    Case,
    generate,
    load_cases,
    percentile,
    pick_ok,
    resolve,
    slot_prf,
    slot_values,
    write_cases,
)
from genre_eval.datasets import DatasetConfig, load_dataset
from genre_eval.stats import bootstrap_ci, paired_bootstrap_ci
from genre_eval.world import EvalWorld


class ChatVariant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    set: dict[str, Any] = Field(default_factory=dict)
    note: str = ""


class ChatBenchSpec(BaseModel):
    """A benchmark file: the catalog, the generated part, hand-written files, variants."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dataset: DatasetConfig
    seed: int = 0
    templated: int = Field(330, ge=0, le=100_000)
    handwritten: list[Path] = Field(default_factory=list)
    # Config overrides every variant shares (dotted keys, as --set).
    config: dict[str, Any] = Field(default_factory=dict)
    # Paired CIs are differences against this variant.
    reference: str = "normaliser"
    variants: list[ChatVariant] = Field(min_length=1)


def load_spec(path: str | Path) -> ChatBenchSpec:
    """Read a TOML benchmark file; relative paths are relative to the file."""
    import tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GenreError(f"{path}: {exc}") from exc
    base = path.parent
    ds = dict(raw.get("dataset", {}))
    if "path" in ds and not Path(ds["path"]).is_absolute():
        ds["path"] = str(base / ds["path"])
    raw["dataset"] = ds
    raw["handwritten"] = [str(base / p) for p in raw.get("handwritten", [])]
    try:
        spec = ChatBenchSpec.model_validate(raw)
    except ValueError as exc:
        raise GenreError(f"{path}: {str(exc)[:500]}") from exc
    names = [v.name for v in spec.variants]
    if spec.reference not in names:
        raise GenreError(f"{path}: reference {spec.reference!r} is not a variant ({names})")
    return spec


def _genres(item: Item) -> list[str]:
    return [g for g in str(item.metadata.get("genres", "")).split("|") if g]


def _year(item: Item) -> int | None:
    y = item.metadata.get("year")
    return y if isinstance(y, int) else None


def _prediction(st: SessionState, turn: Turn) -> dict[str, Any]:
    """What the session holds after a turn, in the gold's terms."""
    intent = turn.intent
    positions = []
    if intent is not None:
        positions = [f"exclude:{p}" for p in intent.exclude_picks]
        positions += [f"more:{p}" for p in intent.more_like]
    return {
        "genres_include": list(st.genres_include),
        "genres_exclude": list(st.genres_exclude),
        "year_min": st.year_min,
        "year_max": st.year_max,
        "references": list(st.references),
        "positions": positions,
    }


def _scored_picks(
    turn: Turn, catalog: Mapping[str, Item], gold: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each pick's year and genres, and whether it meets the gold wishes."""
    ref_genres = [g for r in gold["references"] if r in catalog for g in _genres(catalog[r])]
    picks = []
    for p in turn.picks:
        item = catalog.get(p.id)
        genres = _genres(item) if item else []
        year = _year(item) if item else None
        picks.append(
            {
                "id": p.id,
                "year": year,
                "genres": genres,
                "ok": pick_ok(genres, year, p.id, gold, ref_genres),
            }
        )
    return picks


def run_case(session: ChatSession, case: Case, catalog: Mapping[str, Item]) -> list[dict[str, Any]]:
    """One conversation: every turn's gold, prediction, picks and timing."""
    rows = []
    last_years: list[int | None] = []
    prev_gold: dict[str, Any] = {}
    prev_expect: dict[str, Any] = {}
    for n, ct in enumerate(case.turns, 1):
        gold = resolve(ct.expect, last_years)
        for key in ("year_min", "year_max"):  # "older ones" then "not that one" keeps it
            raw = getattr(ct.expect, key)
            if raw in RELATIVE and prev_expect.get(key) == raw:
                gold[key] = prev_gold.get(key)
        error = None
        try:
            turn = session.send(ct.text)
        except IntentError as exc:
            turn = session.state.turns[-1]
            error = str(exc)
        pred = _prediction(session.state, turn)
        picks = _scored_picks(turn, catalog, gold)
        rows.append(
            {
                "case": case.id,
                "part": case.part,
                "kind": case.kind,
                "turn": n,
                "text": ct.text,
                "gold": gold,
                "pred": pred,
                "picks": picks,
                "seconds": turn.seconds,
                "read_by": turn.read_by,
                "relaxed": turn.relaxed,
                "error": error or turn.error,
                "leftover": (turn.reading or {}).get("leftover", []),
            }
        )
        last_years = [_year(catalog[p.id]) if p.id in catalog else None for p in turn.picks]
        prev_gold, prev_expect = gold, ct.expect.model_dump()
    return rows


def bench_cases(
    spec: ChatBenchSpec,
    items: Sequence[Item],
    popularity: Mapping[str, int],
    catalog: Mapping[str, Item],
) -> list[Case]:
    cases = generate(items, popularity, spec.templated, spec.seed) if spec.templated else []
    for path in spec.handwritten:
        cases += load_cases(path, catalog)
    return cases


def _selected(cases: list[Case], parts: Sequence[str], limit: int | None) -> list[Case]:
    """The cases of ``parts`` (all when empty), the first ``limit`` of each part."""
    if parts:
        cases = [c for c in cases if c.part in parts]
    if limit is not None:
        per: Counter[str] = Counter()
        kept = []
        for c in cases:
            if per[c.part] < limit:
                kept.append(c)
                per[c.part] += 1
        cases = kept
    return cases


def run_bench(
    spec: ChatBenchSpec,
    out: Path,
    only: Sequence[str] = (),
    limit: int | None = None,
    parts: Sequence[str] = (),
    workers: int = 1,
    overrides: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the variants (all, or ``only``) and write one JSONL of turns per variant."""
    names = [v.name for v in spec.variants]
    unknown = [o for o in only if o not in names]
    if unknown:
        raise GenreError(f"--only: {unknown} not variants of {spec.name}; known: {names}")
    ds = load_dataset(spec.dataset)
    popularity = Counter(r.item_id for r in ds.interactions)
    cases = bench_cases(spec, list(ds.items.values()), popularity, ds.items)
    out.mkdir(parents=True, exist_ok=True)
    write_cases(cases, out / "cases.jsonl")
    cases = _selected(cases, parts, limit)
    world: EvalWorld | None = None
    for variant in spec.variants:
        if only and variant.name not in only:
            continue
        cfg = load_config(
            None, overrides={**spec.config, **variant.set, **(overrides or {})}, use_env=False
        )
        if world is None:
            world = EvalWorld(ds, cfg.embedder)
        rec = world.recommender(cfg)
        db = out / f"sessions-{variant.name}.sqlite"
        db.unlink(missing_ok=True)
        store = SessionStore(db)
        t0 = time.perf_counter()

        def one(case: Case, rec: Any = rec, store: SessionStore = store) -> list[dict[str, Any]]:
            return run_case(ChatSession.start(rec, store), case, ds.items)

        rows: list[dict[str, Any]] = []
        path = out / f"{variant.name}.jsonl"
        # Written case by case, so a run stopped by a time limit keeps what it finished.
        with path.open("w", encoding="utf-8") as fh, ThreadPoolExecutor(workers) as pool:
            for case_rows in pool.map(one, cases):
                for r in case_rows:
                    r["variant"] = variant.name
                    r["workers"] = workers
                    fh.write(json.dumps(r) + "\n")
                fh.flush()
                rows += case_rows
        store.close()
        echo(
            f"{variant.name}: {len(cases)} cases, {len(rows)} turns in "
            f"{time.perf_counter() - t0:.0f}s -> {path}"
        )
    if world is not None:
        from genre_agent.llm import clear_engines

        clear_engines()


# --- summary and report ----------------------------------------------------------------------
def _turn_share(row: Mapping[str, Any]) -> float:
    picks = row["picks"]
    return sum(p["ok"] for p in picks) / len(picks) if picks else 0.0


def _turn_exact(row: Mapping[str, Any]) -> float:
    return float(all(slot_values(row["gold"], s) == slot_values(row["pred"], s) for s in SLOTS))


def summarize_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every metric of one variant over some turns."""
    prf = slot_prf([r["gold"] for r in rows], [r["pred"] for r in rows])
    picks = [p for r in rows for p in r["picks"]]
    secs = [r["seconds"] for r in rows]
    settled = [r["seconds"] for r in rows if r["read_by"] == "normaliser"]
    llm = [r["seconds"] for r in rows if "llm" in r["read_by"]]
    share = [_turn_share(r) for r in rows]
    ci = bootstrap_ci(share)
    return {
        "turns": len(rows),
        "slots": {
            s: {"p": v.precision, "r": v.recall, "f1": v.f1, "tp": v.tp, "fp": v.fp, "fn": v.fn}
            for s, v in prf.items()
        },
        "picks": len(picks),
        "picks_ok": sum(p["ok"] for p in picks),
        "pick_share": (sum(p["ok"] for p in picks) / len(picks)) if picks else 0.0,
        "turn_share": {"mean": ci.mean, "low": ci.low, "high": ci.high},
        "turns_without_picks": sum(1 for r in rows if not r["picks"]),
        "relaxed_turns": sum(1 for r in rows if r["relaxed"]),
        "errors": sum(1 for r in rows if r["error"]),
        "exact_turns": sum(_turn_exact(r) for r in rows),
        "llm_turns": len(llm),
        "settled_turns": len(settled),
        "p50_s": percentile(secs, 50),
        "p95_s": percentile(secs, 95),
        "settled_p50_s": percentile(settled, 50),
        "settled_p95_s": percentile(settled, 95),
        "llm_p50_s": percentile(llm, 50),
        "llm_p95_s": percentile(llm, 95),
        "workers": max((r.get("workers", 1) for r in rows), default=1),
    }


def summarize(out: Path, reference: str) -> dict[str, Any]:
    """Per variant and part (template / hand / hand-holdout / all); paired CIs against
    ``reference`` on the turns both ran."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob("*.jsonl")):
        if path.name == "cases.jsonl":
            continue
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        if rows:
            runs[path.stem] = rows
    if not runs:
        raise GenreError(f"{out}: no variant results; run `genre eval chat` first")
    summary: dict[str, Any] = {"reference": reference, "variants": {}}
    ref_rows = {(r["case"], r["turn"]): r for r in runs.get(reference, [])}
    for name, rows in runs.items():
        parts: dict[str, Any] = {}
        for part in sorted({r["part"] for r in rows}):
            sub = [r for r in rows if r["part"] == part]
            parts[part] = summarize_rows(sub)
            if name != reference and ref_rows:
                both = [
                    (r, ref_rows[(r["case"], r["turn"])])
                    for r in sub
                    if (r["case"], r["turn"]) in ref_rows
                ]
                if both:
                    d_share = paired_bootstrap_ci(
                        [_turn_share(a) for a, _ in both], [_turn_share(b) for _, b in both]
                    )
                    d_exact = paired_bootstrap_ci(
                        [_turn_exact(a) for a, _ in both], [_turn_exact(b) for _, b in both]
                    )
                    parts[part]["vs_reference"] = {
                        "turns": len(both),
                        "turn_share": d_share.__dict__,
                        "exact": d_exact.__dict__,
                    }
        summary["variants"][name] = parts
    return summary


def _f1(slot: Mapping[str, Any]) -> str:
    """F1, or "-" when the slot had nothing to find and nothing was claimed."""
    if not (slot["tp"] or slot["fp"] or slot["fn"]):
        return "-"
    return f"{slot['f1']:.3f}"


def report_markdown(summary: Mapping[str, Any], spec: ChatBenchSpec | None = None) -> str:
    ref = summary["reference"]
    lines = [f"# Chat understanding: {spec.name if spec else ''}", ""]
    parts = sorted({p for v in summary["variants"].values() for p in v})
    for part in parts:
        lines += [
            f"## Part: {part}",
            "",
            "| variant | turns | "
            + " | ".join(f"F1 {s}" for s in SLOTS)
            + " | picks meeting every hard wish | turn share [95% CI] | relaxed | no picks"
            " | p50 s | p95 s | settled p50 s | LLM turns |",
            "|---" * (len(SLOTS) + 10) + "|",
        ]
        for name, v in summary["variants"].items():
            if part not in v:
                continue
            m = v[part]
            ts = m["turn_share"]
            lines.append(
                f"| {name} | {m['turns']} | "
                + " | ".join(_f1(m["slots"][s]) for s in SLOTS)
                + f" | {m['picks_ok']}/{m['picks']} ({m['pick_share']:.3f})"
                f" | {ts['mean']:.3f} [{ts['low']:.3f}, {ts['high']:.3f}]"
                f" | {m['relaxed_turns']} | {m['turns_without_picks']}"
                f" | {m['p50_s']:.2f} | {m['p95_s']:.2f} | {m['settled_p50_s']:.2f}"
                f" | {m['llm_turns']} |"
            )
        lines += ["", f"Paired differences against `{ref}` (same turns), 95% bootstrap CI:", ""]
        lines += [
            "| variant | turns | turn share diff | all-slots-right diff |",
            "|---|---|---|---|",
        ]
        for name, v in summary["variants"].items():
            d = v.get(part, {}).get("vs_reference")
            if d:
                a, b = d["turn_share"], d["exact"]
                lines.append(
                    f"| {name} | {d['turns']} | {a['mean']:+.3f} "
                    f"[{a['low']:+.3f}, {a['high']:+.3f}] | {b['mean']:+.3f} "
                    f"[{b['low']:+.3f}, {b['high']:+.3f}] |"
                )
        lines.append("")
    lines += [
        "Slots: micro-averaged precision/recall/F1 of the session's wishes after each turn",
        "against the case's expected wishes (eval/genre_eval/chat_bench.py). A pick meets the",
        "hard wishes when every wanted genre is present, no unwanted one, the year is within",
        "the bounds,",
        "it is not a named title, and it shares a genre with a named title. Latency is the",
        "turn's time in ChatSession.send (reading + retrieval; rationales as configured), with",
        "the number of concurrent sessions in summary.json (`workers`).",
    ]
    return "\n".join(lines) + "\n"


def write_report(out: Path, spec: ChatBenchSpec) -> tuple[Path, dict[str, Any]]:
    summary = summarize(out, spec.reference)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    md = out / "report.md"
    md.write_text(report_markdown(summary, spec), encoding="utf-8")
    return md, summary
