"""Run an experiment: every system is a Recommender config, scored on the same cases.

A baseline is a retrieval-only config (one source, or the fusion); a variant is the base
config plus its fields. For each case the harness calls the system's public API only:
``Recommender.rank_many`` (the sampled, popularity and retriever protocols: the case's
candidates, in their presented order) or ``Recommender.recommend_many`` (two-stage: the
system retrieves from the whole catalog itself). Nothing here retrieves, builds a ranking
request or runs a rank loop of its own.

Resuming: ``results.jsonl`` is appended after every batch; a rerun skips (system, seed, user)
keys already present. LLM answers go through ``CachingLLM``, so a rerun in a fresh directory
with the same cache replays bit-identical rankings.

Label-blindness: a request carries the candidate ids and the visible history only (as
interaction rows, so ratings split liked from not liked as in serving); the target never
reaches a system, and a failed request is retried with the same request. A variant's
profile (``profile.use_in_rerank``) is built from the same visible history; its enriched
items (``enrich.enabled``) are the candidates, enriched without any label (see
``genre_eval.augment``).

Explanations: a line whose items have rationales also records them (``explanations``: each
with its cites, evidence ids, shared attributes, unsupported terms, the item's title and
genres), the truncated rationale attempts and the per-user explanation metrics
(``genre_eval.explain_metrics``). With ``experiment.explanations``, a retrieval-mode
variant also re-ranks each user's served candidates without the cited history items, and
without as many random ones, through a Recommender of its own config with
``rationale_top_r = 0`` (no LLM), and records the mean rank drops (``cf_drop_cited``,
``cf_drop_random``). Baselines' lines are unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genre_agent.catalog.items import Item
from genre_agent.config import Config, LLMConfig
from genre_agent.errors import ConfigError, GenreError
from genre_agent.llm.base import LLM
from genre_agent.ranking import needs, needs_llm
from genre_agent.service.profiles import ProfileError
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import RecRequest
from genre_agent.types import Recommendation
from genre_eval.augment import VariantInputs, check_switches
from genre_eval.cache import CachingLLM
from genre_eval.experiment import Experiment, VariantSpec
from genre_eval.lines import add_counterfactuals, identity, result_lines
from genre_eval.prepared import Prepared, baseline_config, prepare, protocol_overrides
from genre_eval.protocols import EvalCase, history_rows

# The preparation's names stay importable from here (their home before the split).
__all__ = [
    "RESULTS",
    "LLMFactory",
    "Prepared",
    "Progress",
    "Runner",
    "baseline_config",
    "default_llm_factory",
    "prepare",
    "protocol_overrides",
    "read_results",
]

LLMFactory = Callable[[LLMConfig], LLM]
Progress = Callable[[str, int, int], None]
RESULTS = "results.jsonl"


def default_llm_factory(cfg: LLMConfig) -> LLM:
    from genre_agent.llm.registry import get_engine

    return get_engine(cfg)


def _batches(seq: Sequence[EvalCase], size: int) -> Iterator[list[EvalCase]]:
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])


def _profile_text(rec: Any) -> str:
    """The text a built profile puts into the prompt ("" : no profile, or an empty one)."""
    return (rec.profile.as_text() or "") if rec is not None else ""


def _isolated(call: Callable[[list[Any]], list[Recommendation]], jobs: list[Any]) -> list[Any]:
    """``call`` on the batch; if it fails, once more per request so one bad answer costs one
    user. A request that still fails yields its exception (scored 0 by the caller)."""
    try:
        return list(call(jobs))
    except GenreError:
        if len(jobs) == 1:
            try:
                return list(call(jobs))
            except GenreError as exc:
                return [exc]
    out: list[Any] = []
    for job in jobs:
        try:
            out.extend(call([job]))
        except GenreError as exc:
            out.append(exc)
    return out


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
            vcfg = self.variant_config(v)
            check_switches(vcfg, v.name)
            if v.ranker != "llm" and (vcfg.profile.use_in_rerank or vcfg.ranking.fusion_weight < 1):
                raise ConfigError(
                    f"variant {v.name!r}: ranker = {v.ranker!r} has no prompt and no LLM score, "
                    "so profile.use_in_rerank and fusion_weight would have no effect"
                )
            self._check_resume(v.name, vcfg)
        for name in exp.baselines:
            self._check_resume(name, baseline_config(exp, name, self.overrides))
        self.prepared = prepare(exp, self.split, self.overrides)

    def variant_config(self, variant: VariantSpec) -> Config:
        return self.system_config(self.exp, variant, self.overrides)

    @staticmethod
    def system_config(
        exp: Experiment, variant: VariantSpec, overrides: Mapping[str, Any] | None = None
    ) -> Config:
        """The config a variant is served with: base config < protocol < variant fields <
        CLI overrides."""
        merged = {**protocol_overrides(exp), **(overrides or {})}
        if variant.ranker == "bm25":
            # BM25 over the variant's item texts, as a retrieval-only system.
            merged.update({"ranking.mode": "retrieval", "retrieval.sources": {"bm25": 1.0}})
        return exp.variant_config(variant, merged)

    def _check_resume(self, name: str, cfg: Config) -> None:
        # Resuming must never mix two configurations in one system.
        stored = self.done_configs.get(name, set())
        fp = cfg.fingerprint()
        if stored - {fp}:
            raise GenreError(
                f"{self.results_path}: system {name!r} already has results from another "
                f"config (config_sha256 {', '.join(sorted(x[:12] for x in stored))}; now "
                f"{fp[:12]}). Resuming would mix two configurations: use a new --out, "
                f"rename the variant, or delete its lines."
            )

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

    # -- one system, one batch: the Recommender's public API -------------------------------
    def _serve(
        self,
        rec: Recommender,
        batch: Sequence[EvalCase],
        *,
        candidates: Mapping[str, Sequence[str | Item]] | None = None,
        profiles: Mapping[str, str] | None = None,
        plain_history: bool = False,
    ) -> list[Any]:
        """Each case through ``rec``: ``rank_many`` on its candidates, or (two-stage)
        ``recommend_many`` from the whole catalog. Returns a Recommendation or the error."""
        ds = self.prepared.ds
        retrieval = needs(rec.config).orders_all
        reqs = []
        for c in batch:
            history: list[Any] = (
                [ds.items[h] for h in c.history] if plain_history else history_rows(ds, c)
            )
            n = len(c.candidates) or rec.config.retrieval.n_candidates
            # Retrieval and the learned ranker order every candidate (AUC, metrics at any k);
            # an LLM ranks its k.
            k = min(n, 100) if retrieval else rec.config.ranking.k
            reqs.append(
                RecRequest(
                    user_id=c.user_id,
                    history=history,
                    k=k,
                    profile=(profiles or {}).get(c.user_id, ""),
                    profile_scope="config",
                )
            )
        if self.exp.protocol.kind == "two-stage":
            return _isolated(rec.recommend_many, reqs)
        jobs = [
            ((candidates or {}).get(c.user_id) or list(c.candidates), r)
            for c, r in zip(batch, reqs, strict=True)
        ]
        return _isolated(rec.rank_many, jobs)

    def run_baselines(self) -> None:
        ds = self.prepared.ds
        for name in self.exp.baselines:
            cfg = baseline_config(self.exp, name, self.overrides)
            todo = self._todo(name, 0)
            total = len(self.prepared.cases)
            self._tick(name, total - len(todo), total)
            if not todo:
                continue
            rec = self.prepared.world.recommender(cfg)
            rec.sources.fusion()  # fit/index before the clock starts: latency is per request
            common = {"dataset_sha256": ds.sha256, "config_sha256": cfg.fingerprint()}
            for batch in _batches(todo, self.exp.batch_size):
                t0 = time.perf_counter()
                outs = self._serve(rec, batch)
                wall = (time.perf_counter() - t0) / len(batch)
                self._append(
                    result_lines(
                        self.prepared.ds,
                        self.exp.ks,
                        self.exp.protocol.kind == "two-stage",
                        name,
                        "baseline",
                        0,
                        batch,
                        outs,
                        wall,
                        common,
                    )
                )
                self._tick(name, total - len(self._todo(name, 0)), total)

    def run_variant(self, variant: VariantSpec) -> None:
        cfg: Config = self.variant_config(variant)
        # A variant that never calls the LLM (retrieval order, no rationales, no profile, no
        # enrichment) does not load an engine.
        llm = CachingLLM(self.llm_factory(cfg.llm), self.cache_path) if needs_llm(cfg) else None
        seeds = self.exp.seeds if cfg.llm.temperature > 0 and llm else self.exp.seeds[:1]
        ds = self.prepared.ds
        meta = {
            "variant": variant.name,
            "config_sha256": cfg.fingerprint(),
            "model_id": llm.model_id if llm else "",
            "model_revision": llm.revision if llm else "",
            "dataset_sha256": ds.sha256,
            "mode": cfg.ranking.mode,
            "template": cfg.ranking.template,
            "engine": cfg.llm.engine,
            "config": cfg.model_dump(mode="json"),
        }
        self.variant_meta[variant.name] = meta
        total = len(self.prepared.cases) * len(seeds)
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
            bm25 = variant.ranker == "bm25"
            # The bm25 variant indexes the enriched texts; LLM variants see enriched
            # candidates as items passed with the request.
            catalog = {**ds.items, **inputs.enriched} if bm25 else None
            cf_rec = self._cf_recommender(cfg, catalog)
            for seed in seeds:
                scfg = cfg.model_copy(
                    update={"llm": cfg.llm.model_copy(update={"seed": cfg.llm.seed + seed})}
                )
                rec = self.prepared.world.recommender(scfg, llm, catalog=catalog)
                for batch in _batches(self._todo(variant.name, seed), self.exp.batch_size):
                    self._variant_batch(
                        variant.name, seed, batch, rec, llm, inputs, cf_rec, bm25, meta
                    )
                    left = sum(len(self._todo(variant.name, s)) for s in seeds)
                    self._tick(variant.name, total - left, total)
        finally:
            meta.update(inputs.meta())
            inputs.close()
            if llm is not None:
                llm.close()

    def _cf_recommender(
        self, cfg: Config, catalog: Mapping[str, Item] | None
    ) -> Recommender | None:
        """Counterfactual re-ranking (experiment.explanations): the same config without
        rationales, so no LLM runs. A ranker that needs the LLM or a fitted model of its own
        is skipped (None)."""
        cf_rec = None
        ranker_needs = needs(cfg)
        if self.exp.explanations and not (ranker_needs.llm or ranker_needs.learned_model):
            ranking = cfg.ranking.model_copy(update={"rationale_top_r": 0})
            cf_rec = self.prepared.world.recommender(
                cfg.model_copy(update={"ranking": ranking}), catalog=catalog
            )
        return cf_rec

    def _variant_batch(
        self,
        name: str,
        seed: int,
        batch: list[EvalCase],
        rec: Recommender,
        llm: CachingLLM | None,
        inputs: VariantInputs,
        cf_rec: Recommender | None,
        bm25: bool,
        meta: dict[str, Any],
    ) -> None:
        """Serve one batch of a variant and append its result lines."""
        hits, misses = (llm.hits, llm.misses) if llm else (0, 0)
        t0 = time.perf_counter()
        profiles = inputs.profiles_for(batch)
        # A user whose profile cannot be built is a failed request (scored 0), like
        # an answer that stays invalid: never quietly ranked without its profile.
        ok = [c for c in batch if not isinstance(profiles.get(c.user_id), ProfileError)]
        texts = {c.user_id: _profile_text(profiles.get(c.user_id)) for c in ok}
        cands = (
            {c.user_id: [inputs.item(i) for i in c.candidates] for c in ok}
            if inputs.enricher is not None and not bm25
            else None
        )
        served = (
            self._serve(rec, ok, candidates=cands, profiles=texts, plain_history=bm25) if ok else []
        )
        by_user = dict(zip([c.user_id for c in ok], served, strict=True))
        outs = [by_user.get(c.user_id, profiles.get(c.user_id)) for c in batch]
        wall = (time.perf_counter() - t0) / len(batch)
        extra = {c.user_id: inputs.record_fields(c, profiles.get(c.user_id)) for c in batch}
        if self.exp.explanations:
            add_counterfactuals(
                self.prepared.ds, self.exp.protocol.seed, cf_rec, ok, by_user, texts, bm25, extra
            )
        two_stage = self.exp.protocol.kind == "two-stage"
        common = identity(meta)
        lines = result_lines(
            self.prepared.ds,
            self.exp.ks,
            two_stage,
            name,
            "llm",
            seed,
            batch,
            outs,
            wall,
            common,
            extra,
        )
        # Share of this batch's engine calls answered from the cache: a replayed
        # batch's wall time says nothing about speed (summary.users_per_min).
        calls = (llm.hits - hits) + (llm.misses - misses) if llm else 0
        rate = (llm.hits - hits) / calls if llm and calls else 0.0
        self._append(
            [{**r, "cache_hit_rate": rate, **({"ranker": "bm25"} if bm25 else {})} for r in lines]
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
        counted = self.prepared.eligibility
        manifest = {
            "experiment": self.exp.model_dump(mode="json"),
            "split": self.split,
            "dataset": {
                "name": self.prepared.ds.name,
                "sha256": self.prepared.ds.sha256,
                "items": len(self.prepared.ds.items),
                "interactions": len(self.prepared.ds.interactions),
                "warnings": self.prepared.ds.warnings,
            },
            "users": len(self.prepared.cases),
            "eligibility": asdict(counted) if counted else None,
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
