"""Old and new rationales side by side, from two runs of one experiment file.

    python -m genre_eval.compare_explanations runs/rationales_old runs/rationales_new

Both runs' explanations are rescored with today's metrics (eval/genre_eval/explain_metrics.py), so a
run made by an older checkout gets the new metrics too; metrics that need the user's
history (grounding, specificity) are taken as the run recorded them. Prints:

- whether the ranked lists are identical (same system, seed and user in both runs);
- one table: each metric's mean over users with its 95% bootstrap CI, per run;
- ``--examples N`` rationales for the same (user, item) from both runs, one row each.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from genre_eval import explain_metrics as em
from genre_eval.explain_style import names_itself_rate, prompt_speak_rate, skeleton_shares
from genre_eval.runner import read_results
from genre_eval.stats import bootstrap_ci

# Recomputed from the recorded explanations (no history needed).
RESCORED = {
    "template_rate": em.template_rate,
    "weak_link_rate": em.weak_link_rate,
    "grounded_facts": em.grounded_facts,
    "unsupported_claim_rate": em.unsupported_claim_rate,
    "grammar_fault_rate": em.grammar_fault_rate,
    "prompt_speak_rate": prompt_speak_rate,
    "names_itself_rate": names_itself_rate,
    "markup_rate": em.markup_rate,
    "self_likening_rate": em.self_likening_rate,
    "unsupported_rate": em.unsupported_rate,
    "truncation_rate": em.truncation_rate,
    "duplicate_share": lambda es: em.duplicate_share([str(e["rationale"]) for e in es]),
}
# As the run recorded them (they need the user's visible history).
RECORDED = ("grounding_rate", "specificity")


def _lines(run: Path) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {(r["system"], r["seed"], r["user_id"]): r for r in read_results(run)}


def per_user(lines: dict[tuple[str, int, str], dict[str, Any]], metric: str) -> list[float]:
    acc: dict[str, list[float]] = defaultdict(list)
    for (_, _, user), r in lines.items():
        entries = r.get("explanations") or []
        if not entries:
            continue
        if metric in RESCORED:
            value = RESCORED[metric](entries)
        else:
            value = (r.get("explain_metrics") or {}).get(metric)
        if value is not None:
            acc[user].append(float(value))
    return [mean(v) for v in acc.values()]


def _entries(lines: dict[tuple[str, int, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for r in lines.values() for e in r.get("explanations") or []]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--examples", type=int, default=10)
    args = ap.parse_args(argv)
    old, new = _lines(args.old), _lines(args.new)
    both = sorted(set(old) & set(new))
    same = sum(old[k]["ranked"] == new[k]["ranked"] for k in both)
    print(f"ranked lists identical: {same} of {len(both)} (system, seed, user) lines")
    n_old = sum(len(r.get("explanations") or []) for r in old.values())
    n_new = sum(len(r.get("explanations") or []) for r in new.values())
    print(f"\n| metric (mean [95% CI] over users) | {args.old.name} | {args.new.name} |")
    print("|---|---|---|")
    print(f"| rationales (n) | {n_old} | {n_new} |")
    for metric in (*RESCORED, *RECORDED):
        cells = []
        for lines in (old, new):
            values = per_user(lines, metric)
            if not values:
                cells.append("-")
                continue
            ci = bootstrap_ci(values, 2000)
            cells.append(f"{ci.mean:.4f} [{ci.low:.4f}, {ci.high:.4f}] (users {len(values)})")
        print(f"| {metric} | {cells[0]} | {cells[1]} |")
    # Over the whole run: a template the model settles into (explain_metrics.skeleton).
    shares = [skeleton_shares(_entries(lines)) for lines in (old, new)]
    for metric in ("top_skeleton_share", "repeated_skeleton_share"):
        cells = [_fmt(s[metric]) for s in shares]
        print(f"| {metric} (whole run) | {cells[0]} | {cells[1]} |")
    print(f"\n| user | item | {args.old.name} | {args.new.name} (cites) |")
    print("|---|---|---|---|")
    shown = 0
    for key in both:
        if shown >= args.examples:
            break
        a = {e["item_id"]: e for e in old[key].get("explanations") or []}
        b = {e["item_id"]: e for e in new[key].get("explanations") or []}
        for item in [i for i in a if i in b][:2]:
            cites = ", ".join(b[item]["cites"]) or "-"
            print(
                f"| {key[2]} | {b[item]['title']} | {a[item]['rationale']} | "
                f"{b[item]['rationale']} ({cites}) |"
            )
            shown += 1


if __name__ == "__main__":
    main()
