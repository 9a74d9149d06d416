"""Parameter search (random or Optuna TPE) on the validation split, then one test run.

Only the validation split is used to choose; the test split is scored once, for the best
trial. The winner is written as a usable genre_agent config TOML.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field

from genre_agent.config import Config, RankingMode, SourceKind
from genre_agent.errors import ConfigError
from genre_eval.experiment import Experiment, VariantSpec
from genre_eval.runner import LLMFactory, Runner
from genre_eval.summary import summarize_prepared


class SearchSpace(BaseModel):
    """Bounds of the knobs searched; a knob whose bounds are equal is fixed.

    ``templates`` empty (the default) keeps the base variant's template.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    history_len: tuple[int, int] = (5, 40)
    temperature: tuple[float, float] = (0.0, 0.0)
    # ranking.fusion_weight, the LLM's share of the final score (scoring variants only; a
    # listwise base variant keeps 1.0).
    fusion_weight: tuple[float, float] = (0.0, 1.0)
    k: tuple[int, int] = (10, 10)
    templates: list[str] = Field(default_factory=list)
    # retrieval.sources weights, per source (e.g. {"itemknn": (0, 2)}); unnamed sources keep
    # the base variant's weight. ``--space source.itemknn=0,2``.
    sources: dict[SourceKind, tuple[float, float]] = Field(default_factory=dict)
    # ranking.mode choices (empty: the base variant's mode). ``--space modes=retrieval,scoring``.
    modes: list[RankingMode] = Field(default_factory=list)


def _no_none(v: Any) -> Any:
    """``v`` with None values left out of every table (TOML has no null)."""
    if isinstance(v, dict):
        return {k: _no_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list | tuple):
        return [_no_none(x) for x in v]
    return v


def config_toml(cfg: Config) -> str:
    """The config as TOML (one table per section; None values omitted, nested ones too),
    written by tomli-w: any Unicode, emoji included, reads back with tomllib."""
    return tomli_w.dumps(_no_none(cfg.model_dump(mode="json")))


def _suggest(space: SearchSpace, trial: Any | None, rng: random.Random) -> dict[str, Any]:
    def num(name: str, lo: float, hi: float, integer: bool) -> Any:
        if lo == hi:
            return lo
        if trial is not None:
            return (trial.suggest_int if integer else trial.suggest_float)(name, lo, hi)
        return rng.randint(int(lo), int(hi)) if integer else rng.uniform(lo, hi)

    params: dict[str, Any] = {
        "history_len": num("history_len", *space.history_len, True),
        "temperature": num("temperature", *space.temperature, False),
        "fusion_weight": num("fusion_weight", *space.fusion_weight, False),
        "k": num("k", *space.k, True),
    }
    if space.sources:
        params["sources"] = {
            k: float(num(f"source.{k}", lo, hi, False)) for k, (lo, hi) in space.sources.items()
        }
    if space.modes:
        params["mode"] = (
            trial.suggest_categorical("mode", space.modes)
            if trial is not None and len(space.modes) > 1
            else (space.modes[0] if len(space.modes) == 1 else rng.choice(space.modes))
        )
        if params["mode"] != "scoring":
            params["fusion_weight"] = 1.0  # only scoring has LLM scores to fuse
    if len(space.templates) == 1:
        params["template"] = space.templates[0]
    elif space.templates:
        params["template"] = (
            trial.suggest_categorical("template", space.templates)
            if trial is not None
            else rng.choice(space.templates)
        )
    return params


def parse_space(specs: list[str]) -> SearchSpace:
    """``["history_len=20,20", "fusion_weight=0,1", "templates=a,b"]`` -> SearchSpace."""
    fields: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if sep and key.startswith("source."):
            bounds = [float(p) for p in value.split(",") if p.strip()] if value else []
            if len(bounds) == 1:
                bounds *= 2
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ConfigError(f"--space {spec!r}: expected source.NAME=LO,HI with LO <= HI")
            fields.setdefault("sources", {})[key.split(".", 1)[1]] = tuple(bounds)
            continue
        if not sep or key not in SearchSpace.model_fields:
            raise ConfigError(
                f"--space {spec!r}: expected KEY=LO,HI with KEY one of "
                f"{sorted(SearchSpace.model_fields)}"
            )
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if key in {"templates", "modes"}:
            fields[key] = parts
            continue
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2:
            raise ConfigError(f"--space {spec!r}: expected two bounds LO,HI")
        try:
            lo, hi = (int(p) if key in {"history_len", "k"} else float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"--space {spec!r}: bounds must be numbers") from None
        if lo > hi:
            raise ConfigError(f"--space {spec!r}: LO > HI")
        fields[key] = (lo, hi)
    try:
        return SearchSpace(**fields)
    except ValueError as exc:
        raise ConfigError(f"--space: {exc}") from None


def _searched_space(
    exp: Experiment,
    base: VariantSpec,
    space: SearchSpace | None,
    overrides: dict[str, Any] | None,
) -> SearchSpace:
    """The space to search: without a scoring mode, fusion_weight stays 1 (an explicit
    other range is an error)."""
    space = space or SearchSpace()
    modes = set(space.modes) or {exp.variant_config(base, overrides).ranking.mode}
    if "scoring" not in modes:
        if space.fusion_weight == SearchSpace().fusion_weight:
            space = space.model_copy(update={"fusion_weight": (1.0, 1.0)})
        elif space.fusion_weight != (1.0, 1.0):
            raise ConfigError(
                f"--space fusion_weight={space.fusion_weight[0]},{space.fusion_weight[1]}: "
                f"variant {base.name!r} ranks listwise, which has no scores to fuse; "
                "search fusion_weight on a scoring variant"
            )
    return space


def search(
    exp: Experiment,
    out_dir: str | Path,
    base: VariantSpec,
    trials: int,
    sampler: Literal["random", "tpe"] = "tpe",
    space: SearchSpace | None = None,
    overrides: dict[str, Any] | None = None,
    llm_factory: LLMFactory | None = None,
    seed: int = 0,
    cache_path: str | Path | None = None,
) -> dict[str, Any]:
    """Run ``trials`` variants on the validation split; score the best on test.

    ``cache_path`` (default ``out_dir/llm_cache.sqlite``): the LLM answer cache; pointing it
    at an eval run's cache replays that run's answers (e.g. the test split) instead of
    recomputing them."""
    out = Path(out_dir)
    space = _searched_space(exp, base, space, overrides)
    cache = Path(cache_path) if cache_path else out / "llm_cache.sqlite"
    quiet = exp.model_copy(update={"baselines": [], "variants": []})
    history: list[dict[str, Any]] = []

    def evaluate(params: dict[str, Any], name: str, split: str) -> float:
        variant = base.model_copy(update={**params, "name": name})
        # A trial directory is scratch: a re-run search starts it afresh (answers stay cached).
        shutil.rmtree(out / name, ignore_errors=True)
        run = Runner(quiet, out / name, overrides, llm_factory, split=split, cache_path=cache)
        run.run_variant(variant)
        run.write_manifest()
        summary = summarize_prepared(out / name, run.prepared)
        return float(summary["systems"][name]["metrics"][exp.primary]["mean"])

    rng = random.Random(seed)
    if sampler == "tpe":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )

        def objective(trial: Any) -> float:
            params = _suggest(space, trial, rng)
            value = evaluate(params, f"trial{trial.number:03d}", "valid")
            history.append({"trial": trial.number, "params": params, "valid": value})
            return value

        study.optimize(objective, n_trials=trials)
    else:
        for n in range(trials):
            params = _suggest(space, None, rng)
            value = evaluate(params, f"trial{n:03d}", "valid")
            history.append({"trial": n, "params": params, "valid": value})
    best = max(history, key=lambda h: (h["valid"], -h["trial"]))
    test_value = evaluate(best["params"], "final", "test")
    variant = base.model_copy(update={**best["params"], "name": "best"})
    # Exactly the config the final run served (protocol fixes included): serving this file
    # reproduces the test number.
    cfg = Runner.system_config(exp, variant, overrides)
    (out / "best_config.toml").write_text(config_toml(cfg), encoding="utf-8")
    result = {
        "primary": exp.primary,
        "sampler": sampler,
        "trials": history,
        "best": best,
        "test": test_value,
        "best_fusion_weight": best["params"]["fusion_weight"],
        "best_sources": cfg.retrieval.sources,
        "best_mode": cfg.ranking.mode,
        "best_config": str(out / "best_config.toml"),
    }
    (out / "search.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return result
