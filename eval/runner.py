"""Run an experiment: baselines and LLM variants on the same cases, one JSONL line per user.

Resuming: ``results.jsonl`` is appended after every batch; a rerun skips (system, seed, user)
keys already present. LLM answers go through ``CachingLLM``, so a rerun in a fresh directory
with the same cache replays bit-identical rankings.

Label-blindness: the ranker gets a ``RankRequest`` built from the candidate ids and the
history only; the target id never reaches it, and a failed request is retried with the same
request, never with knowledge of the answer. A variant's profile (``profile.use_in_rerank``)
is built from the same visible history; its enriched items (``enrich.enabled``) are the
candidates, enriched without any label (see ``genre_agent.eval.augment``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_agent.catalog.items import Item
from genre_agent.config import Config, LLMConfig
from genre_agent.errors import ConfigError, GenreError
from genre_agent.eval.augment import VariantInputs, check_switches
from genre_agent.eval.baselines import BaselineSuite
from genre_agent.eval.cache import CachingLLM
from genre_agent.eval.datasets import Dataset, load_dataset
from genre_agent.eval.experiment import Experiment, VariantSpec
from genre_agent.eval.metrics import order_by_scores, user_metrics
from genre_agent.eval.protocols import EvalCase, build_cases, retriever_recall
from genre_agent.llm.base import LLM
from genre_agent.ranking import RankRequest, make_ranker
from genre_agent.ranking.popularity_hint import hint_candidates, popularity_tiers
from genre_agent.retrievers.bm25 import BM25Retriever
from genre_agent.service.profiles import ProfileError
from genre_agent.types import Candidate

LLMFactory = Callable[[LLMConfig], LLM]
Progress = Callable[[str, int, int], None]
RESULTS = "results.jsonl"


def default_llm_factory(cfg: LLMConfig) -> LLM:
    from genre_agent.llm.registry import get_engine

    return get_engine(cfg)


@dataclass
class Prepared:
    ds: Dataset
    suite: BaselineSuite
    cases: list[EvalCase]
    retriever_recall: float | None


def prepare(
    exp: Experiment, split: str | None = None, overrides: dict[str, Any] | None = None
) -> Prepared:
    """Load the data, fit baselines on the training part, build the cases."""
    ds = load_dataset(exp.dataset)
    base = exp.base_config(overrides)
    suite = BaselineSuite(
        ds,
        embedder=base.embedder,
        fusion_weights=dict(exp.fusion_weights),
        seed=exp.protocol.seed,
        history_len=base.retrieval.history_len,
    )
    proto = exp.protocol
    retrieve = (
        suite.retrieve_fn(proto.retriever) if proto.kind in {"retriever", "two-stage"} else None
    )
    cases = build_cases(
        ds,
        proto,
        split or exp.split,  # type: ignore[arg-type]
        popularity=suite.popularity,
        retrieve=retrieve,
    )
    recall = retriever_recall(cases) if proto.kind == "two-stage" else None
    return Prepared(ds, suite, cases, recall)


def _record(
    system: str,
    kind: str,
    seed: int,
    case: EvalCase,
    ranked: list[str],
    ks: Sequence[int],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "system": system,
        "kind": kind,
        "seed": seed,
        "user_id": case.user_id,
        "split": case.split,
        "target": case.target,
        # Length of the history the systems saw (after protocol.max_history): segments.
        "history_len": len(case.history),
        "ranked": ranked,
        "metrics": user_metrics(ranked, {case.target}, case.candidates, ks),
        **extra,
    }


def _identity(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What every result line of a variant records about its config, model and data."""
    return {
        k: meta[k]
        for k in ("config_sha256", "model_id", "model_revision", "dataset_sha256", "variant")
    }


def _batches(seq: Sequence[EvalCase], size: int) -> Iterator[list[EvalCase]]:
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])


def rank_requests(
    case: EvalCase,
    ds: Dataset,
    history_len: int,
    k: int,
    tiers: Mapping[str, str] | None = None,
    *,
    items: Mapping[str, Item] | None = None,
    profile: str | None = None,
    retrieval: Mapping[str, float] | None = None,
) -> RankRequest:
    """The model's whole input: candidates (presented order) and recent history, no target.

    ``tiers``: popularity tiers (``ranking.popularity_hint``), counted over the training
    interactions only, so a held-out target is never counted. ``items``: enriched copies
    that replace candidates; ``profile``: the user's profile text (both label-blind, see
    ``genre_agent.eval.augment``). ``retrieval``: the fusion retriever's scores (fitted on
    training interactions), the candidates' retrieval scores for ``ranking.fusion_weight``
    and the unstable fallback; they are not in the prompt."""
    items = items or {}
    hist = [ds.items[h] for h in case.history][-history_len:] if history_len else []
    cands = [
        Candidate(
            item=items.get(c) or ds.items[c],
            score=retrieval.get(c, 0.0) if retrieval is not None else 0.0,
            source="fusion" if retrieval is not None else "eval",
        )
        for c in case.candidates
    ]
    if tiers is not None:
        cands = hint_candidates(cands, tiers)
    return RankRequest(candidates=cands, history=hist, profile=profile, k=min(k, len(cands)))


def _profile_text(rec: Any) -> str | None:
    """The text a built profile puts into the prompt (None: no profile, or an empty one)."""
    return (rec.profile.as_text() or None) if rec is not None else None


def _rank_isolated(
    ranker: Any, reqs: list[RankRequest], temperature: float, seed: int
) -> list[Any]:
    """rank_many on the batch; if it fails, once more per request so one bad answer costs
    one user. A request that still fails yields its exception (scored 0 by the caller)."""
    try:
        return list(ranker.rank_many(reqs, temperature=temperature, seed=seed))
    except GenreError:
        if len(reqs) == 1:
            try:
                return list(ranker.rank_many(reqs, temperature=temperature, seed=seed))
            except GenreError as exc:
                return [exc]
    out: list[Any] = []
    for req in reqs:
        try:
            out.extend(ranker.rank_many([req], temperature=temperature, seed=seed))
        except GenreError as exc:
            out.append(exc)
    return out


def _rejections(entries: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in entries:
        reason = str(e.get("reason", "invalid"))
        counts[reason] = counts.get(reason, 0) + 1
    return counts


class Runner:
    """Executes an experiment into ``out_dir`` (results.jsonl + manifest.json)."""

    def __init__(
        self,
        exp: Experiment,
        out_dir: str | Path,
        overrides: dict[str, Any] | None = None,
        llm_factory: LLMFactory | None = None,
        progress: Progress | None = None,
        split: str | None = None,
        cache_path: str | Path | None = None,
    ) -> None:
        self.exp = exp
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.overrides = dict(overrides or {})
        self.llm_factory = llm_factory or default_llm_factory
        self.progress = progress
        self.split = split or exp.split
        self.cache_path = Path(cache_path) if cache_path else self.out / "llm_cache.sqlite"
        self.results_path = self.out / RESULTS
        self.done_configs: dict[str, set[str]] = {}
        self.done = self._done_keys()
        self.variant_meta: dict[str, dict[str, Any]] = {}
        for v in exp.variants:  # before any work: what the harness cannot apply or resume
            vcfg = exp.variant_config(v, self.overrides)
            check_switches(vcfg, v.name)
            if v.ranker != "llm" and (vcfg.profile.use_in_rerank or vcfg.ranking.fusion_weight < 1):
                raise ConfigError(
                    f"variant {v.name!r}: ranker = {v.ranker!r} has no prompt and no LLM score, "
                    "so profile.use_in_rerank and fusion_weight would have no effect"
                )
            # Resuming must never mix two configurations in one system.
            stored = self.done_configs.get(v.name, set())
            fp = vcfg.fingerprint()
            if stored - {fp}:
                raise GenreError(
                    f"{self.results_path}: variant {v.name!r} already has results from another "
                    f"config (config_sha256 {', '.join(sorted(x[:12] for x in stored))}; now "
                    f"{fp[:12]}). Resuming would mix two configurations: use a new --out, "
                    f"rename the variant, or delete its lines."
                )
        self.prepared = prepare(exp, self.split, self.overrides)

    def _done_keys(self) -> set[tuple[str, int, str]]:
        keys = set()
        if self.results_path.exists():
            for line in self.results_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    keys.add((rec["system"], rec["seed"], rec["user_id"]))
                    if rec.get("config_sha256"):
                        self.done_configs.setdefault(rec["system"], set()).add(rec["config_sha256"])
        return keys

    def _append(self, records: list[dict[str, Any]]) -> None:
        with self.results_path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
                self.done.add((rec["system"], rec["seed"], rec["user_id"]))

    def _todo(self, system: str, seed: int) -> list[EvalCase]:
        return [c for c in self.prepared.cases if (system, seed, c.user_id) not in self.done]

    def _tick(self, label: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(label, done, total)

    def run_baselines(self) -> None:
        ds, suite, ks = self.prepared.ds, self.prepared.suite, self.exp.ks
        for name in self.exp.baselines:
            todo = self._todo(name, 0)
            total = len(self.prepared.cases)
            self._tick(name, total - len(todo), total)
            if todo and name != "random":
                # Fit/index before the clock starts: latency is per request, not per fit.
                suite.retriever(name)
            for batch in _batches(todo, self.exp.batch_size):
                recs = []
                for case in batch:
                    t0 = time.perf_counter()
                    ranked = suite.rank(name, case)
                    seconds = time.perf_counter() - t0
                    recs.append(
                        _record(
                            name,
                            "baseline",
                            0,
                            case,
                            ranked,
                            ks,
                            failed=False,
                            latency_s=seconds,
                            wall_s=seconds,
                            dataset_sha256=ds.sha256,
                        )
                    )
                self._append(recs)
                self._tick(name, total - len(self._todo(name, 0)), total)

    def run_variant(self, variant: VariantSpec) -> None:
        cfg: Config = self.exp.variant_config(variant, self.overrides)
        llm = CachingLLM(self.llm_factory(cfg.llm), self.cache_path)
        ranker = make_ranker(llm, cfg.ranking)
        seeds = self.exp.seeds if cfg.llm.temperature > 0 else self.exp.seeds[:1]
        ds = self.prepared.ds
        meta = {
            "variant": variant.name,
            "config_sha256": cfg.fingerprint(),
            "model_id": llm.model_id,
            "model_revision": llm.revision,
            "dataset_sha256": ds.sha256,
            "mode": cfg.ranking.mode,
            "template": cfg.ranking.template,
            "engine": cfg.llm.engine,
            "config": cfg.model_dump(mode="json"),
        }
        self.variant_meta[variant.name] = meta
        total = len(self.prepared.cases) * len(seeds)
        tiers = None
        if cfg.ranking.popularity_hint:
            pop = self.prepared.suite.popularity
            tiers = popularity_tiers({i: pop.get(i, 0) for i in ds.items}, len(ds.items))
        inputs = VariantInputs(cfg, llm, ds)
        # Enrichment is an indexing-time job: done up front for the cases still to run (cached,
        # so a resumed run asks the LLM only for what is missing), outside request latency.
        todo_cases = {c.user_id: c for s in seeds for c in self._todo(variant.name, s)}
        try:
            inputs.enrich(
                list(todo_cases.values()),
                self.exp.batch_size,
                lambda d, t: self._tick(f"{variant.name} (enrich)", d, t),
            )
            if variant.ranker == "bm25":
                self._bm25_variant(variant, meta, inputs)
                return
            for seed in seeds:
                for batch in _batches(self._todo(variant.name, seed), self.exp.batch_size):
                    hits, misses = llm.hits, llm.misses
                    recs = self._variant_batch(
                        variant, cfg, meta, ranker, inputs, tiers, seed, batch
                    )
                    # Share of this batch's engine calls answered from the cache: a replayed
                    # batch's wall time says nothing about speed (summary.users_per_min).
                    calls = (llm.hits - hits) + (llm.misses - misses)
                    rate = (llm.hits - hits) / calls if calls else 0.0
                    self._append([{**r, "cache_hit_rate": rate} for r in recs])
                    left = sum(len(self._todo(variant.name, s)) for s in seeds)
                    self._tick(variant.name, total - left, total)
        finally:
            meta.update(inputs.meta())
            inputs.close()
            llm.close()

    def _bm25_variant(self, variant: VariantSpec, meta: dict[str, Any], inputs: Any) -> None:
        """BM25 over the variant's catalog: enriched items replace their plain versions on
        the indexed side; the query is the history's plain text, as in the bm25 baseline."""
        ds = self.prepared.ds
        t0 = time.perf_counter()
        bm25 = BM25Retriever(
            {**ds.items, **inputs.enriched}, history_len=self.prepared.suite.history_len
        )
        fit_s = time.perf_counter() - t0
        todo = self._todo(variant.name, 0)
        total = len(self.prepared.cases)
        common = _identity(meta)
        for batch in _batches(todo, self.exp.batch_size):
            recs = []
            for case in batch:
                t1 = time.perf_counter()
                scores = bm25.score(case.history, case.candidates, history_items=ds.items)
                ranked = order_by_scores(dict(zip(case.candidates, scores, strict=True)))
                seconds = time.perf_counter() - t1
                recs.append(
                    _record(
                        variant.name,
                        "llm",
                        0,
                        case,
                        ranked,
                        self.exp.ks,
                        failed=False,
                        latency_s=seconds,
                        wall_s=seconds,
                        prompt_tokens=0,
                        completion_tokens=0,
                        rejected={},
                        template_sha256="",
                        ranker="bm25",
                        bm25_fit_s=fit_s,
                        cache_hit_rate=0.0,
                        **inputs.record_fields(case, None),
                        **common,
                    )
                )
            self._append(recs)
            self._tick(variant.name, total - len(self._todo(variant.name, 0)), total)

    def _variant_batch(
        self,
        variant: VariantSpec,
        cfg: Config,
        meta: dict[str, Any],
        ranker: Any,
        inputs: VariantInputs,
        tiers: Mapping[str, str] | None,
        seed: int,
        batch: list[EvalCase],
    ) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        # Retrieval scores only where the ranker reads them (fusion, unstable fallback).
        fuse = cfg.ranking.fusion_weight < 1.0 or cfg.ranking.unstable_fallback
        profiles = inputs.profiles_for(batch)
        # A user whose profile cannot be built is a failed request (scored 0), like an answer
        # that stays invalid: the variant never quietly ranks a user without its profile.
        ok = [c for c in batch if not isinstance(profiles.get(c.user_id), ProfileError)]
        reqs = [
            rank_requests(
                c,
                self.prepared.ds,
                cfg.retrieval.history_len,
                cfg.ranking.k,
                tiers,
                items=inputs.enriched,
                profile=_profile_text(profiles.get(c.user_id)),
                retrieval=self.prepared.suite.scores("fusion", c) if fuse else None,
            )
            for c in ok
        ]
        temperature, llm_seed = cfg.llm.temperature, cfg.llm.seed + seed
        outs = _rank_isolated(ranker, reqs, temperature, llm_seed) if reqs else []
        by_user = dict(zip([c.user_id for c in ok], outs, strict=True))
        wall = (time.perf_counter() - t0) / len(batch)
        recs = []
        for c in batch:
            prof = profiles.get(c.user_id)
            out = by_user.get(c.user_id, prof)
            extra = inputs.record_fields(c, prof)
            recs.append(self._variant_record(variant, meta, seed, c, out, wall, extra))
        return recs

    def _variant_record(
        self,
        variant: VariantSpec,
        meta: dict[str, Any],
        seed: int,
        case: EvalCase,
        out: Any,
        wall: float,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        common = {**_identity(meta), **(extra or {})}
        if isinstance(out, Exception):
            return _record(
                variant.name,
                "llm",
                seed,
                case,
                [],
                self.exp.ks,
                failed=True,
                error=str(out)[:500],
                latency_s=wall,
                wall_s=wall,
                prompt_tokens=0,
                completion_tokens=0,
                rejected={},
                template_sha256="",
                **common,
            )
        ranked_items, trace = out
        llm_ids = [r.item.id for r in ranked_items]
        rest = [c for c in case.candidates if c not in set(llm_ids)]
        # Unranked candidates follow in presented order (label-blind), so AUC is defined.
        ranked = llm_ids + rest
        return _record(
            variant.name,
            "llm",
            seed,
            case,
            ranked,
            self.exp.ks,
            failed=False,
            latency_s=sum(t.seconds for t in trace.timings),  # every stage, any ranker
            wall_s=wall,
            prompt_tokens=trace.prompt_tokens,
            completion_tokens=trace.completion_tokens,
            rejected=_rejections(trace.rejected_entries),
            llm_calls=trace.llm_calls,
            template_sha256=trace.template_sha256,
            **common,
        )

    def write_manifest(self) -> None:
        """Write manifest.json. Variants recorded by an earlier invocation into the same run
        directory (``--only``, resumes) are kept; this invocation's entries replace theirs."""
        path = self.out / "manifest.json"
        variants: dict[str, Any] = {}
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("dataset", {}).get("sha256") == self.prepared.ds.sha256:
                variants.update(old.get("variants", {}))
        variants.update(self.variant_meta)
        manifest = {
            "experiment": self.exp.model_dump(mode="json"),
            "split": self.split,
            "dataset": {
                "name": self.prepared.ds.name,
                "sha256": self.prepared.ds.sha256,
                "items": len(self.prepared.ds.items),
                "interactions": len(self.prepared.ds.interactions),
            },
            "users": len(self.prepared.cases),
            "retriever_recall": self.prepared.retriever_recall,
            "variants": variants,
        }
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True))

    def run(self) -> Path:
        self.run_baselines()
        for variant in self.exp.variants:
            self.run_variant(variant)
        self.write_manifest()
        return self.out


def read_results(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / RESULTS
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
