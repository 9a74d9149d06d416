"""Aggregate per-user results into per-system metrics with CIs and paired comparisons."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from genre_agent.eval.metrics import average_popularity, coverage, intra_list_diversity, mean
from genre_agent.eval.runner import read_results
from genre_agent.eval.stats import bootstrap_ci, paired_bootstrap_ci, paired_permutation_p


def _per_user(records: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """Per-user value averaged over seeds (seeds are repeated measures of one user)."""
    acc: dict[str, list[float]] = defaultdict(list)
    for r in records:
        acc[r["user_id"]].append(float(r["metrics"][metric]))
    return {u: mean(v) for u, v in acc.items()}


def summarize(
    out_dir: str | Path,
    features: dict[str, set[str]] | None = None,
    popularity: dict[str, float] | None = None,
    catalog_size: int | None = None,
) -> dict[str, Any]:
    """Write and return ``summary.json``: per system means + 95% CIs, list-level aggregates,
    rates, cost, and every variant compared (paired by user) with every other system."""
    out = Path(out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    exp = manifest["experiment"]
    ks, n_boot, n_perm = exp["ks"], exp["bootstrap"], exp["permutations"]
    records = read_results(out)
    by_sys: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_sys[r["system"]].append(r)
    metric_names = sorted(records[0]["metrics"]) if records else []
    users = sorted({r["user_id"] for r in records})
    kmax = max(ks)
    systems: dict[str, Any] = {}
    for name, recs in by_sys.items():
        entry: dict[str, Any] = {
            "kind": recs[0]["kind"],
            "users": len({r["user_id"] for r in recs}),
            "complete": {r["user_id"] for r in recs} == set(users),
            "seeds": sorted({r["seed"] for r in recs}),
            "metrics": {},
        }
        for m in metric_names:
            ci = bootstrap_ci(list(_per_user(recs, m).values()), n_boot)
            entry["metrics"][m] = {"mean": ci.mean, "low": ci.low, "high": ci.high}
        seeds = entry["seeds"]
        if len(seeds) > 1:
            entry["per_seed"] = {
                s: mean([r["metrics"][exp["primary"]] for r in recs if r["seed"] == s])
                for s in seeds
            }
        lists = [r["ranked"] for r in recs]
        entry[f"coverage@{kmax}"] = coverage(lists, catalog_size or 0, kmax)
        if popularity is not None:
            entry[f"avg_popularity@{kmax}"] = average_popularity(lists, popularity, kmax)
        if features is not None:
            entry[f"ild@{kmax}"] = mean(
                [intra_list_diversity(lst, features, kmax) for lst in lists]
            )
        n = len(recs)
        entry["failure_rate"] = sum(bool(r.get("failed")) for r in recs) / n
        rejected: dict[str, int] = defaultdict(int)
        for r in recs:
            for reason, c in (r.get("rejected") or {}).items():
                rejected[reason] += c
        entry["rejected_per_request"] = {k: v / n for k, v in sorted(rejected.items())}
        entry["latency_s_mean"] = mean([r["latency_s"] for r in recs])
        wall = sum(r["wall_s"] for r in recs)
        entry["users_per_min"] = 60.0 * n / wall if wall > 0 else None
        entry["prompt_tokens_per_request"] = mean([r.get("prompt_tokens", 0) for r in recs])
        entry["completion_tokens_per_request"] = mean([r.get("completion_tokens", 0) for r in recs])
        if recs[0]["kind"] == "llm":
            entry.update(
                {
                    k: recs[0].get(k)
                    for k in (
                        "template_sha256",
                        "model_id",
                        "model_revision",
                        "config_sha256",
                        "variant",
                    )
                }
            )
        entry["dataset_sha256"] = recs[0].get("dataset_sha256")
        systems[name] = entry
    variants = [n for n, e in systems.items() if e["kind"] == "llm"]
    comparisons = []
    for a in variants:
        for b in systems:
            if a == b or (b in variants and variants.index(b) < variants.index(a)):
                continue
            for m in metric_names:
                ua, ub = _per_user(by_sys[a], m), _per_user(by_sys[b], m)
                common = sorted(set(ua) & set(ub))
                xa, xb = [ua[u] for u in common], [ub[u] for u in common]
                ci = paired_bootstrap_ci(xa, xb, n_boot)
                comparisons.append(
                    {
                        "a": a,
                        "b": b,
                        "metric": m,
                        "users": len(common),
                        "diff": ci.mean,
                        "low": ci.low,
                        "high": ci.high,
                        "p": paired_permutation_p(xa, xb, n_perm),
                    }
                )
    summary = {
        "dataset": manifest["dataset"],
        "users": len(users),
        "split": manifest["split"],
        "retriever_recall": manifest.get("retriever_recall"),
        "ks": ks,
        "primary": exp["primary"],
        "systems": systems,
        "comparisons": comparisons,
        "variants": manifest.get("variants", {}),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def summarize_prepared(out_dir: str | Path, prepared: Any) -> dict[str, Any]:
    """``summarize`` with genre features, training popularity and catalog size of the data."""
    items = prepared.ds.items
    features = {
        i: {g for g in str(it.metadata.get("genres", "")).split("|") if g}
        for i, it in items.items()
    }
    pop = {i: float(c) for i, c in prepared.suite.popularity.items()}
    return summarize(out_dir, features=features, popularity=pop, catalog_size=len(items))
