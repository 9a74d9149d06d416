"""The ``service.experiments`` section: experiments, their variants, overlays and shares."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ExperimentKind = Literal["ab", "interleave"]
# Sections an overlay may change: what a recommendation depends on. The rest (service,
# store, queue, fit, tune, embedder, enrich, llm) is process-wide: one engine, one store;
# chat sessions are not in experiments.
OVERLAY_SECTIONS: tuple[str, ...] = ("retrieval", "ranking", "profile", "cold")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class VariantConfig(BaseModel):
    """One arm: a name, its share of the users and a partial config deep-merged onto the
    base config (``{"ranking": {"mode": "retrieval"}}``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    # An interleave experiment shows both variants to every user: its shares are not used
    # (leave them at the default 0.5).
    share: float = Field(0.5, ge=0.0, le=1.0)
    overlay: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_sections(self) -> VariantConfig:
        bad = [k for k in self.overlay if k not in OVERLAY_SECTIONS]
        if bad:
            raise ValueError(
                f"variant {self.name!r}: overlay section {bad[0]!r} cannot differ between "
                f"variants (allowed: {', '.join(OVERLAY_SECTIONS)})"
            )
        return self


class ExperimentConfig(BaseModel):
    """An online experiment (docs/experiments.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    kind: ExperimentKind = "ab"
    variants: tuple[VariantConfig, ...] = Field(min_length=2, max_length=20)
    # A feedback event counts for an exposure of its item to its user at most this long
    # after the exposure (seconds).
    window_s: float = Field(86_400.0, gt=0.0)
    # The report warns about a variant with fewer users than this.
    min_users: int = Field(50, ge=1)
    # False: nobody is assigned (trace.experiment stays None); the report still reads it.
    enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name!r}: variant names repeat: {names}")
        if self.kind == "interleave":
            if len(self.variants) != 2:
                raise ValueError(
                    f"experiment {self.name!r}: an interleave experiment has exactly two "
                    f"variants, got {len(self.variants)} ({names})"
                )
            return self
        total = sum(v.share for v in self.variants)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            shares = {v.name: v.share for v in self.variants}
            raise ValueError(
                f"experiment {self.name!r}: variant shares must sum to 1, got {total:g} ({shares})"
            )
        return self

    def variant(self, name: str) -> VariantConfig:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"experiment {self.name!r} has no variant {name!r}")


def unique_names(experiments: tuple[ExperimentConfig, ...]) -> None:
    """Raise ValueError when two experiments share a name."""
    names = [e.name for e in experiments]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"experiments: names repeat: {dup}")


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` merged into ``base``: nested dicts merge key by key, anything else
    replaces (so ``{"retrieval": {"sources": {"bm25": 0}}}`` turns one source off and
    keeps the others' weights)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
