"""Experiment files (TOML or YAML): dataset, protocol, prompt variants and baselines."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genre_agent.config import Config, EngineKind, SourceKind, load_config, read_config_file
from genre_agent.errors import ConfigError
from genre_eval.baselines import ALL_BASELINES, DEFAULT_BASELINES, BaselineKind
from genre_eval.datasets import DatasetConfig
from genre_eval.metrics import METRICS_AT_K
from genre_eval.protocols import ProtocolConfig, Split


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VariantSpec(_Frozen):
    """One prompt configuration under test. Unset fields keep the base config's value."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    template: str | None = None
    model: str | None = None
    engine: EngineKind | None = None
    mode: Literal["listwise", "scoring", "retrieval", "learned"] | None = None
    # retrieval.sources: the candidate sources and their fusion weights.
    sources: dict[SourceKind, float] | None = None
    k: int | None = Field(None, ge=1, le=100)
    history_len: int | None = Field(None, ge=0, le=500)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    # ranking.fusion_weight: the LLM's share w of the final score,
    # w * minmax(LLM) + (1 - w) * minmax(fusion retriever), exactly as in serving (scoring
    # mode; the fusion retriever's scores stand in for the retrieval scores).
    fusion_weight: float | None = Field(None, ge=0.0, le=1.0)
    # Who orders the candidates: the LLM ranker, or BM25 over the variant's item texts (with
    # enrich.enabled: the LLM-enriched ones), which measures enrichment's effect on retrieval.
    ranker: Literal["llm", "bm25"] = "llm"
    # Any other config key, dotted: {"ranking.max_item_chars" = 120}.
    overrides: dict[str, Any] = Field(default_factory=dict)

    def dotted(self) -> dict[str, Any]:
        out = dict(self.overrides)
        for key, dotted in (
            ("template", "ranking.template"),
            ("model", "llm.model"),
            ("engine", "llm.engine"),
            ("mode", "ranking.mode"),
            ("k", "ranking.k"),
            ("history_len", "retrieval.history_len"),
            ("temperature", "llm.temperature"),
            ("fusion_weight", "ranking.fusion_weight"),
            ("sources", "retrieval.sources"),
        ):
            value = getattr(self, key)
            if value is not None:
                out[dotted] = value
        return out


class Experiment(_Frozen):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    dataset: DatasetConfig
    protocol: ProtocolConfig = ProtocolConfig()
    split: Split = "test"
    # The base genre_agent Config tree every variant starts from.
    config: dict[str, Any] = Field(default_factory=dict)
    variants: list[VariantSpec] = Field(default_factory=list)
    baselines: list[BaselineKind] = Field(default_factory=lambda: list(DEFAULT_BASELINES))
    fusion_weights: dict[str, float] = Field(
        default_factory=lambda: {"itemknn": 1.0, "bm25": 0.5, "popularity": 0.5}
    )
    # LLM sampling seeds: all are run when a variant samples (temperature > 0), else the first.
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10], min_length=1)
    primary: str = "ndcg@10"
    # Also report every metric per group of users split by visible history length at these
    # thresholds ([5]: <=5 and >5); see genre_eval.summary.
    segments: list[int] = Field(default_factory=list)
    # Also measure whether rationales are faithful: for every retrieval-mode variant, re-rank
    # each user's candidates without the history items the rationales cite (and without as
    # many random ones) and record the explained items' rank drops (docs/eval.md,
    # "Explanation metrics"). The other explanation metrics are recorded regardless.
    explanations: bool = False
    batch_size: int = Field(16, ge=1, le=4096)
    bootstrap: int = Field(2000, ge=100)
    permutations: int = Field(5000, ge=100)

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        names = [v.name for v in self.variants] + list(self.baselines)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant/baseline names must be unique; repeated: {dupes}")
        allowed = {f"{m}@{k}" for m in METRICS_AT_K for k in self.ks} | {"auc"}
        if self.primary not in allowed:
            raise ValueError(f"primary {self.primary!r} is not computed; one of {sorted(allowed)}")
        if self.segments != sorted(set(self.segments)) or any(t < 1 for t in self.segments):
            raise ValueError(f"segments must be increasing thresholds >= 1: {self.segments}")
        for name in self.fusion_weights:
            if name not in ALL_BASELINES or name in {"fusion", "random"}:
                raise ValueError(f"fusion_weights: {name!r} is not a fusable retriever")
        return self

    def base_config(self, overrides: dict[str, Any] | None = None) -> Config:
        return load_config(self.config, overrides=overrides, use_env=False)

    def variant_config(
        self, variant: VariantSpec, overrides: dict[str, Any] | None = None
    ) -> Config:
        """Base config < variant fields < CLI overrides."""
        merged = {**variant.dotted(), **(overrides or {})}
        try:
            return load_config(self.config, overrides=merged, use_env=False)
        except ConfigError as exc:
            raise ConfigError(f"variant {variant.name!r}: {exc}") from None


def _format(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid experiment"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<top>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_experiment(source: str | Path | dict[str, Any]) -> Experiment:
    """Load and validate.

    Environment variables in ``dataset.path`` (``$GENRE_DATA/ml-latest-small``) are
    expanded; an unset one is a ConfigError. A relative dataset path is then resolved
    against the file's folder.
    """
    if isinstance(source, dict):
        data, name, base = dict(source), "experiment", Path.cwd()
    else:
        path = Path(source)
        data, name, base = read_config_file(path), str(path), path.parent
    ds = data.get("dataset")
    if isinstance(ds, dict) and "path" in ds:
        raw = str(ds["path"])
        expanded = os.path.expandvars(raw)
        if "$" in expanded:
            found = re.search(r"\$\{([^}]*)\}?|\$(\w*)", expanded)
            var = "$" + ((found.group(1) or found.group(2) or "") if found else "")
            raise ConfigError(
                f"{name}: dataset.path: environment variable {var} is not set (path {raw!r})"
            )
        ds_path = Path(expanded)
        if not ds_path.is_absolute():
            ds_path = (base / ds_path).resolve()
        data["dataset"] = {**ds, "path": str(ds_path)}
    try:
        exp = Experiment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(name, exc)) from None
    for v in exp.variants:  # fail early on a bad config key in any variant
        exp.variant_config(v)
    return exp
