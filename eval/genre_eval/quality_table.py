"""The README's quality table from finished runs: one row per system, both protocols.

    python -m genre_eval.quality_table runs/default_full runs/default_sampled

Each cell is the mean NDCG@10 with its 95% bootstrap CI (summary.json); the full-catalog
columns add the system's candidate recall@N. ``scripts/quality.sh`` runs the experiments and
then this.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from genre_eval.protocols import ties_line


def _cell(m: dict[str, float] | None, scale: float = 1.0, digits: int = 3) -> str:
    if not m:
        return ""
    f = f"{{:.{digits}f}}"
    return (
        f"{f.format(m['mean'] * scale)} [{f.format(m['low'] * scale)}, "
        f"{f.format(m['high'] * scale)}]"
    )


def table(full: dict[str, Any], sampled: dict[str, Any]) -> str:
    metric = full["primary"]
    n = full.get("n_candidates") or "N"
    names = list(dict.fromkeys([*full["systems"], *sampled["systems"]]))
    lines = [
        f"| system | full catalog {metric} | candidate recall@{n} | "
        f"sampled-{sampled.get('n_candidates', 20)} {metric} (×100) | users |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        f = full["systems"].get(name, {})
        s = sampled["systems"].get(name, {})
        users = f.get("users") or s.get("users") or ""
        lines.append(
            f"| {name} | {_cell(f.get('metrics', {}).get(metric), digits=4)} | "
            f"{_cell(f.get('candidate_recall'))} | "
            f"{_cell(s.get('metrics', {}).get(metric), 100, 1)} | {users} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m genre_eval.quality_table FULL_RUN SAMPLED_RUN")
    full, sampled = (json.loads((Path(a) / "summary.json").read_text()) for a in args)
    print(table(full, sampled))
    print()
    print(f"full catalog: {ties_line(full.get('eligibility'))}")
    print(f"sampled: {ties_line(sampled.get('eligibility'))}")


if __name__ == "__main__":
    main()
