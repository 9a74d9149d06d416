"""Replayable online experiments: simulated users from a real data set's held-out part.

Each eligible user of the harness's split (genre_eval.protocols: every interaction but the
last two is training, the last two are held out) is served by each variant's Recommender,
built from the base config plus the variant's overlay (genre_agent.config.variant_config,
what `genre serve` runs) over the harness's world (the training interactions, the sources
fitted on them), with explain off. A simulated user "clicks" every shown item that is one
of their held-out interactions, one second after the impression. The exposures and clicks
then go through the service's own join and report (genre_agent.experiments), for an A/B
split (users assigned by the stable hash) and for team-draft interleaving of the same two
variants on the same users.

The ranked lists are computed once per (variant, user) and reused by every simulated run:
a run only re-draws the assignment (A/B: a new experiment name, so a new hash), the
interleaving's coin flips, and (power curves) which users take part.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

from genre_agent.config import Config, SourceKind, load_config, variant_config
from genre_agent.experiments.assign import assign
from genre_agent.experiments.config import ExperimentConfig
from genre_agent.experiments.exposures import Exposure, Signal, join
from genre_agent.experiments.interleave import impression_seed, team_draft
from genre_agent.experiments.report import ExperimentReport, build_report
from genre_agent.service.requests import RecRequest
from genre_eval.world import EvalWorld

# The two configurations the offline harness already separates (README, "Quality"): the
# shipped default against the popularity source alone.
POPULARITY_ONLY: dict[str, Any] = {
    "retrieval": {"sources": {**{k: 0.0 for k in get_args(SourceKind)}, "popularity": 1.0}}
}
SIM_VARIANTS: dict[str, dict[str, Any]] = {"default": {}, "popularity": POPULARITY_ONLY}
WINDOW_S = 86_400.0


@dataclass(frozen=True)
class SimUser:
    user_id: str
    heldout: frozenset[str]


@dataclass
class Population:
    """Simulated users and each variant's ranked list for each of them (cached)."""

    users: list[SimUser]
    lists: dict[str, dict[str, list[str]]]
    k: int

    def copy_variant(self, name: str, as_name: str) -> Population:
        """The population with one more variant whose lists are ``name``'s (an A/A twin)."""
        return Population(self.users, {**self.lists, as_name: self.lists[name]}, self.k)


def sim_experiment(base: Config, variants: dict[str, dict[str, Any]], name: str) -> Config:
    """``base`` with an experiment whose variants are ``variants`` (name -> overlay), so
    each variant's config is built and validated as the service builds it."""
    share = 1.0 / len(variants)
    spec = {
        "name": name,
        "variants": [{"name": n, "share": share, "overlay": o} for n, o in variants.items()],
    }
    data = base.model_dump()
    data["service"]["experiments"] = (spec,)
    return load_config(data, use_env=False)


def rank_population(
    world: EvalWorld,
    cfg: Config,
    users: Sequence[str],
    k: int = 10,
    batch: int = 64,
    progress: Any = None,
) -> Population:
    """Every variant of ``cfg``'s first experiment ranks every user (explain off)."""
    exp = cfg.service.experiments[0]
    by_user = world.ds.by_user
    sim = [SimUser(u, frozenset(r.item_id for r in by_user[u][-2:])) for u in users]
    lists: dict[str, dict[str, list[str]]] = {}
    for v in exp.variants:
        vcfg = variant_config(cfg, exp.name, v.name)
        quiet = vcfg.model_copy(
            update={"ranking": vcfg.ranking.model_copy(update={"rationale_top_r": 0})}
        )
        rec = world.recommender(quiet)
        out: dict[str, list[str]] = {}
        for start in range(0, len(sim), batch):
            chunk = sim[start : start + batch]
            answers = rec.recommend_many([RecRequest(user_id=s.user_id, k=k) for s in chunk])
            for s, a in zip(chunk, answers, strict=True):
                out[s.user_id] = [it.item.id for it in a.items]
            if progress is not None:
                progress(v.name, min(start + batch, len(sim)), len(sim))
        lists[v.name] = out
    return Population(sim, lists, k)


def clicks(user: SimUser, ts: float) -> list[Signal]:
    """The user's held-out items as positive events one second after an impression at
    ``ts`` (the join keeps those that were shown)."""
    return [Signal(user.user_id, item, ts + 1.0, True) for item in sorted(user.heldout)]


def ab_run(
    pop: Population, users: Sequence[SimUser], exp: ExperimentConfig, n_boot: int = 2000
) -> ExperimentReport:
    """One A/B experiment: each user sees the list of the variant the hash assigns."""
    exposures, signals = [], []
    for n, u in enumerate(users):
        v = assign(exp, u.user_id).name
        ts = float(n)
        exposures.append(
            Exposure(exp.name, v, u.user_id, f"{exp.name}-{n}", ts, tuple(pop.lists[v][u.user_id]))
        )
        signals += clicks(u, ts)
    return build_report(exp, join(exposures, signals, exp.window_s), n_boot)


def interleave_run(
    pop: Population,
    users: Sequence[SimUser],
    exp: ExperimentConfig,
    salt: str = "",
    n_boot: int = 2000,
) -> ExperimentReport:
    """One interleaving experiment: each user sees the team-draft merge of both lists."""
    a, b = exp.variants[0].name, exp.variants[1].name
    exposures, signals = [], []
    for n, u in enumerate(users):
        rng = random.Random(impression_seed(exp.name, salt, u.user_id))
        il = team_draft(pop.lists[a][u.user_id], pop.lists[b][u.user_id], pop.k, rng)
        teams = tuple(a if t == "a" else b for t in il.teams)
        ts = float(n)
        exposures.append(
            Exposure(exp.name, "", u.user_id, f"{exp.name}-{n}", ts, tuple(il.items), teams)
        )
        signals += clicks(u, ts)
    return build_report(exp, join(exposures, signals, exp.window_s), n_boot)


def experiment(
    name: str, kind: str, variants: Sequence[str], min_users: int = 50
) -> ExperimentConfig:
    """A report-only experiment over cached lists (variants without overlays)."""
    share = 1.0 / len(variants)
    return ExperimentConfig.model_validate(
        {
            "name": name,
            "kind": kind,
            "variants": [{"name": v, "share": share} for v in variants],
            "window_s": WINDOW_S,
            "min_users": min_users,
        }
    )
