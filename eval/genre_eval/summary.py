"""Aggregate per-user results into per-system metrics with CIs and paired comparisons.

Segments: with thresholds ``[5]`` (experiment ``segments``, or ``genre eval segments --at 5``)
the users are also split by the length of the history the systems saw (``history_len`` of
each result line, after ``protocol.max_history``) into ``<=5`` and ``>5``, and each group gets
its own per-system CIs and paired comparisons. Several runs on the same data (e.g. one with
``protocol.max_history = 5`` and one without) can be pooled: a user then counts in each
group once per run that puts them there, and pairs are only formed within a group.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from genre_agent.errors import GenreError
from genre_eval.explain_metrics import CF_METRICS
from genre_eval.explain_metrics import METRICS as EXPLAIN_METRICS
from genre_eval.metrics import average_popularity, coverage, intra_list_diversity, mean
from genre_eval.runner import read_results
from genre_eval.stats import bootstrap_ci, paired_bootstrap_ci, paired_permutation_p


def _per_user(records: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """Per-user value averaged over seeds (seeds are repeated measures of one user)."""
    acc: dict[str, list[float]] = defaultdict(list)
    for r in records:
        acc[r["user_id"]].append(float(r["metrics"][metric]))
    return {u: mean(v) for u, v in acc.items()}


def _compare(
    by_sys: dict[str, list[dict[str, Any]]], a: str, b: str, m: str, n_boot: int, n_perm: int
) -> dict[str, Any]:
    """mean(a - b) over the users both systems have, paired bootstrap CI and permutation p."""
    ua, ub = _per_user(by_sys[a], m), _per_user(by_sys[b], m)
    common = sorted(set(ua) & set(ub))
    xa, xb = [ua[u] for u in common], [ub[u] for u in common]
    ci = paired_bootstrap_ci(xa, xb, n_boot)
    return {
        "a": a,
        "b": b,
        "metric": m,
        "users": len(common),
        "diff": ci.mean,
        "low": ci.low,
        "high": ci.high,
        "p": paired_permutation_p(xa, xb, n_perm),
    }


def _user_means(records: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Per-user value of an explanation metric averaged over seeds; None values (undefined
    for that line) are left out, and a user with none is left out."""
    acc: dict[str, list[float]] = defaultdict(list)
    for r in records:
        # The counterfactual drops are top-level fields, the other metrics in explain_metrics.
        value = r.get(key) if key in CF_METRICS else (r.get("explain_metrics") or {}).get(key)
        if value is not None:
            acc[r["user_id"]].append(float(value))
    return {u: mean(v) for u, v in acc.items()}


def explanation_summary(records: list[dict[str, Any]], n_boot: int) -> dict[str, Any] | None:
    """One system's explanation metrics (eval/genre_eval/explain_metrics.py): each per-user value
    averaged over users with a 95% bootstrap CI, and the counterfactual's paired difference
    mean(cited drop - random drop) with a paired bootstrap CI. None without rationales."""
    recs = [r for r in records if r.get("explanations")]
    if not recs:
        return None
    metrics: dict[str, Any] = {}
    for m in (*EXPLAIN_METRICS, *CF_METRICS):
        per_user = _user_means(recs, m)
        if not per_user:  # undefined for every user (e.g. no counterfactual): no number
            continue
        ci = bootstrap_ci(list(per_user.values()), n_boot)
        metrics[m] = {"mean": ci.mean, "low": ci.low, "high": ci.high, "users": len(per_user)}
    cited, rand = _user_means(recs, "cf_drop_cited"), _user_means(recs, "cf_drop_random")
    both = sorted(set(cited) & set(rand))
    if both:
        ci = paired_bootstrap_ci([cited[u] for u in both], [rand[u] for u in both], n_boot)
        metrics["cf_drop_cited_minus_random"] = {
            "mean": ci.mean,
            "low": ci.low,
            "high": ci.high,
            "users": len(both),
        }
    return {
        "rationales": sum(len(r["explanations"]) for r in recs),
        "users": len({r["user_id"] for r in recs}),
        "metrics": metrics,
    }


def segment_labels(thresholds: list[int]) -> list[str]:
    """``[5]`` -> ``["<=5", ">5"]``; ``[5, 20]`` -> ``["<=5", "6-20", ">20"]``."""
    labels, low = [], 0
    for t in thresholds:
        labels.append(f"<={t}" if low == 0 else f"{low + 1}-{t}")
        low = t
    return [*labels, f">{low}"]


def segment_of(history_len: int, thresholds: list[int]) -> str:
    labels = segment_labels(thresholds)
    for label, t in zip(labels, thresholds, strict=False):
        if history_len <= t:
            return label
    return labels[-1]


def segment_summary(
    records: list[dict[str, Any]],
    thresholds: list[int],
    primary: str,
    n_boot: int,
    n_perm: int,
) -> dict[str, Any]:
    """Per history-length group: users, per-system metric CIs, and paired comparisons on
    ``primary``: every LLM variant against every earlier variant and every baseline
    (``diff`` = mean(a - b), a the variant)."""
    if not thresholds or sorted(set(thresholds)) != list(thresholds) or thresholds[0] < 0:
        raise GenreError(f"segment thresholds must be increasing, >= 0: {thresholds}")
    if any("history_len" not in r for r in records):
        raise GenreError(
            "results.jsonl has lines without history_len (written before segments existed); "
            "rerun into a new --out directory (with --cache to replay) to segment them"
        )
    order = list(dict.fromkeys(r["system"] for r in records))
    kinds = {r["system"]: r["kind"] for r in records}
    groups = []
    for label in segment_labels(thresholds):
        recs = [r for r in records if segment_of(int(r["history_len"]), thresholds) == label]
        by_sys: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in recs:
            by_sys[r["system"]].append(r)
        names = [n for n in order if n in by_sys]
        metric_names = sorted(recs[0]["metrics"]) if recs else []
        systems = {}
        for name in names:
            metrics = {}
            for m in metric_names:
                ci = bootstrap_ci(list(_per_user(by_sys[name], m).values()), n_boot)
                metrics[m] = {"mean": ci.mean, "low": ci.low, "high": ci.high}
            systems[name] = {
                "kind": kinds[name],
                "users": len({r["user_id"] for r in by_sys[name]}),
                "failure_rate": mean([float(bool(r.get("failed"))) for r in by_sys[name]]),
                "metrics": metrics,
            }
        variants = [n for n in names if kinds[n] == "llm"]
        pairs = [(a, b) for i, a in enumerate(variants) for b in variants[:i]]
        pairs += [(a, b) for a in variants for b in names if kinds[b] != "llm"]
        groups.append(
            {
                "label": label,
                "users": len({r["user_id"] for r in recs}),
                "systems": systems,
                "comparisons": [_compare(by_sys, a, b, primary, n_boot, n_perm) for a, b in pairs],
            }
        )
    return {"by": "history_len", "thresholds": list(thresholds), "groups": groups}


def summarize_segments(
    run_dirs: list[str | Path], thresholds: list[int], out_dir: str | Path
) -> dict[str, Any]:
    """Pool the result lines of several runs on the same data and split, segment them, and
    write ``segments.json`` in ``out_dir``. A (system, seed, user) may appear in several runs
    only if each puts it in a different group (e.g. once with its full history and once
    cut by ``protocol.max_history``)."""
    manifests = [json.loads((Path(d) / "manifest.json").read_text()) for d in run_dirs]
    first = manifests[0]
    for d, m in zip(run_dirs, manifests, strict=True):
        for field in ("sha256", "name"):
            if m["dataset"][field] != first["dataset"][field]:
                raise GenreError(f"{d}: dataset {field} differs from {run_dirs[0]}")
        if m["split"] != first["split"]:
            raise GenreError(f"{d}: split {m['split']!r} differs from {first['split']!r}")
    records: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, str, str], str] = {}
    for d in run_dirs:
        for r in read_results(d):
            if "history_len" not in r:
                raise GenreError(f"{d}: result lines without history_len; rerun to segment")
            key = (r["system"], r["seed"], r["user_id"], segment_of(r["history_len"], thresholds))
            if key in seen:
                raise GenreError(
                    f"{d} and {seen[key]} both put user {key[2]!r} of {key[0]!r} in group "
                    f"{key[3]!r}; pool runs that differ in protocol.max_history"
                )
            seen[key] = str(d)
            records.append(r)
    exp = first["experiment"]
    seg = segment_summary(
        records, thresholds, exp["primary"], exp["bootstrap"], exp["permutations"]
    )
    seg.update(
        {
            "runs": [
                {
                    "dir": str(d),
                    "experiment": m["experiment"]["name"],
                    "max_history": m["experiment"]["protocol"].get("max_history"),
                    "users": m["users"],
                }
                for d, m in zip(run_dirs, manifests, strict=True)
            ],
            "dataset": first["dataset"],
            "split": first["split"],
            "primary": exp["primary"],
        }
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "segments.json").write_text(json.dumps(seg, indent=2, sort_keys=True))
    return seg


def _system_entry(
    recs: list[dict[str, Any]],
    users: list[str],
    metric_names: list[str],
    exp: dict[str, Any],
    kmax: int,
    features: dict[str, set[str]] | None,
    popularity: dict[str, float] | None,
    catalog_size: int | None,
) -> dict[str, Any]:
    """One system's entry of ``summary.json``: its metrics with CIs, list-level aggregates,
    then its rates and cost (:func:`_cost`) and its explanations."""
    n_boot = exp["bootstrap"]
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
            s: mean([r["metrics"][exp["primary"]] for r in recs if r["seed"] == s]) for s in seeds
        }
    lists = [r["ranked"] for r in recs]
    entry[f"coverage@{kmax}"] = coverage(lists, catalog_size or 0, kmax)
    if popularity is not None:
        entry[f"avg_popularity@{kmax}"] = average_popularity(lists, popularity, kmax)
    if features is not None:
        entry[f"ild@{kmax}"] = mean([intra_list_diversity(lst, features, kmax) for lst in lists])
    entry.update(_cost(recs, n_boot))
    entry["dataset_sha256"] = recs[0].get("dataset_sha256")
    explained = explanation_summary(recs, n_boot)
    if explained is not None:
        entry["explanations"] = explained
    return entry


def _cost(recs: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    """A system's candidate recall, failure and rejection rates, speed, tokens and (LLM
    variants) provenance."""
    out: dict[str, Any] = {}
    n = len(recs)
    if "candidate_recall" in recs[0]:  # two-stage: the system's own candidates
        ci = bootstrap_ci([float(r["candidate_recall"]) for r in recs], n_boot)
        out["candidate_recall"] = {"mean": ci.mean, "low": ci.low, "high": ci.high}
    out["failure_rate"] = sum(bool(r.get("failed")) for r in recs) / n
    rejected: dict[str, int] = defaultdict(int)
    for r in recs:
        for reason, c in (r.get("rejected") or {}).items():
            rejected[reason] += c
    out["rejected_per_request"] = {k: v / n for k, v in sorted(rejected.items())}
    # Speed only from requests the engine answered: a batch served from the cache (a
    # replay) is not a measurement. ``cache_hit_rate`` says how much was replayed.
    live = [r for r in recs if r.get("cache_hit_rate", 0.0) == 0.0]
    wall = sum(r["wall_s"] for r in live)
    # Speed is the LLM variants' cost: a baseline answers in microseconds, and a users/min
    # in the millions measures nothing the report compares.
    timed = wall > 0 and recs[0]["kind"] == "llm"
    out["users_per_min"] = 60.0 * len(live) / wall if timed else None
    out["latency_s_mean"] = mean([r["latency_s"] for r in live]) if live else None
    out["cache_hit_rate"] = mean([r.get("cache_hit_rate", 0.0) for r in recs])
    out["prompt_tokens_per_request"] = mean([r.get("prompt_tokens", 0) for r in recs])
    out["completion_tokens_per_request"] = mean([r.get("completion_tokens", 0) for r in recs])
    if recs[0]["kind"] == "llm":
        out.update(
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
    return out


def summarize(
    out_dir: str | Path,
    features: dict[str, set[str]] | None = None,
    popularity: dict[str, float] | None = None,
    catalog_size: int | None = None,
    segments: list[int] | None = None,
) -> dict[str, Any]:
    """Write and return ``summary.json``: per system means + 95% CIs, list-level aggregates,
    rates, cost, and every variant compared (paired by user) with every other system;
    with ``segments`` (default: the experiment's) also per history-length group."""
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
        systems[name] = _system_entry(
            recs, users, metric_names, exp, kmax, features, popularity, catalog_size
        )
    variants = [n for n, e in systems.items() if e["kind"] == "llm"]
    comparisons = []
    for a in variants:
        for b in systems:
            if a == b or (b in variants and variants.index(b) < variants.index(a)):
                continue
            for m in metric_names:
                comparisons.append(_compare(by_sys, a, b, m, n_boot, n_perm))
    summary = {
        "dataset": manifest["dataset"],
        "users": len(users),
        "split": manifest["split"],
        "retriever_recall": manifest.get("retriever_recall"),
        # Who was evaluated, and how many of them had tied interactions at the split point.
        "eligibility": manifest.get("eligibility"),
        "n_candidates": exp.get("protocol", {}).get("n_candidates"),
        "ks": ks,
        "primary": exp["primary"],
        "systems": systems,
        "comparisons": comparisons,
        "variants": manifest.get("variants", {}),
    }
    thresholds = exp.get("segments", []) if segments is None else segments
    if thresholds and records:
        summary["segments"] = segment_summary(
            records, list(thresholds), exp["primary"], n_boot, n_perm
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def summarize_prepared(out_dir: str | Path, prepared: Any) -> dict[str, Any]:
    """``summarize`` with genre features, training popularity and catalog size of the data."""
    items = prepared.ds.items
    features = {
        i: {g for g in str(it.metadata.get("genres", "")).split("|") if g}
        for i, it in items.items()
    }
    pop = {i: float(c) for i, c in prepared.world.popularity.items()}
    return summarize(out_dir, features=features, popularity=pop, catalog_size=len(items))
