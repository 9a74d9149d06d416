"""Evaluation protocols: leave-one-out by time, then candidate sets per user.

Split: each user's interactions sorted by timestamp; the last one is the test target, the
one before it the validation target. Interactions that share a timestamp (on
ml-latest-small, 94 of 610 users have two or more at their last one) are ordered by
``protocol.ties``: ``"random"`` (the default) puts each tied group in an order drawn from a
generator seeded by (``protocol.split_seed``, user id), so which of them is held out does
not depend on the ids; ``"id"`` orders them by item id, the old rule, under which the held-out
item is the largest id of its group, something an order-aware model can learn
(tests/test_eval_protocols.py shows a "next id sorts after the last one" predictor scoring
under it). How many users had a tie at each split point is counted in :class:`Eligibility`
(manifest.json, the summary and the report). The history shown for the test split is
everything before the test target; for validation, everything before the validation target.
Training data for baselines and hard-negative retrievers is every user's interactions minus
their last two, so no held-out target leaks into popularity or item-item similarity.

Simulated cold users (``protocol.max_history = N``): after the split, each user's history is
cut to its most recent N interactions. Everything that conditions on the user sees only that
visible history: the LLM ranker, the eval profile builder, the user-based baselines (item-kNN,
BM25, embedding, fusion score the candidates against it) and the retriever of the
``retriever``/``two-stage`` protocols. Two things deliberately stay as without the cut, so a
run with and a run without it are paired user by user: the eligible users and, for the
``sampled``/``popularity`` protocols, the candidate sets (negatives are still drawn from items
the user never interacted with, at any time). Catalog-level statistics (training popularity,
item-item co-occurrence) are fitted on the whole training part, the users' cut-off
interactions included: one user among hundreds barely moves them, and keeping them fixed
keeps every baseline the same fitted model in both runs (a small optimistic bias for
item-kNN on the cold run, noted in docs/eval.md).

Candidate sets (``protocol.kind``):
- ``sampled``: target + (n-1) unseen items drawn uniformly, shuffled (LLMRank style).
- ``popularity``: target + (n-1) unseen items drawn with probability proportional to training
  popularity (popularity-matched hard negatives), shuffled.
- ``retriever``: target + the retriever's top (n-1) unseen items, shuffled.
- ``two-stage`` (full catalog): no fixed candidates. Each system retrieves its own top n
  unseen items from the whole catalog (``Recommender.recommend_many`` with
  ``retrieval.n_candidates = n``) and ranks them; the target may be missing (then every
  metric is 0), and each system's candidate recall@n is reported.
Every draw uses a generator seeded by (seed, user id), so reruns and variants see identical
candidates.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from genre_agent.errors import ConfigError
from genre_agent.storage.interactions import Interaction, TieOrder
from genre_eval.datasets import Dataset

ProtocolKind = Literal["sampled", "popularity", "retriever", "two-stage"]
RetrieverKind = Literal["popularity", "bm25", "itemknn", "embedding", "fusion"]
Split = Literal["valid", "test"]


class ProtocolConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ProtocolKind = "sampled"
    n_candidates: int = Field(20, ge=2, le=1000)
    retriever: RetrieverKind = "fusion"
    min_history: int = Field(5, ge=1)
    # Keep only the most recent N interactions of each user's history (None: all of it);
    # simulates users with short histories, see the module docstring.
    max_history: int | None = Field(None, ge=1)
    users: int = Field(200, ge=1)
    seed: int = 0
    # Interactions that share a timestamp: a seeded draw ("random") or by item id ("id", the
    # old rule, to reproduce old numbers); split_seed seeds the draw (module docstring).
    ties: TieOrder = "random"
    split_seed: int = 0


@dataclass(frozen=True)
class EvalCase:
    user_id: str
    split: str
    history: tuple[str, ...]
    target: str
    candidates: tuple[str, ...]

    @property
    def target_in_candidates(self) -> bool:
        return self.target in self.candidates


def user_seed(seed: int, user_id: str, salt: str = "") -> int:
    """A 64-bit seed from (seed, user, salt), stable across processes."""
    blob = f"{seed}\x00{user_id}\x00{salt}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def split_dataset(ds: Dataset, cfg: ProtocolConfig) -> Dataset:
    """``ds`` with its users' tied interactions ordered as ``cfg`` says (``ties``,
    ``split_seed``): the dataset every split, case and training set of a run is built from."""
    return ds.ordered(cfg.ties, cfg.split_seed)


def _check_ordered(ds: Dataset, cfg: ProtocolConfig) -> None:
    if (ds.ties, ds.tie_seed) != (cfg.ties, cfg.split_seed):
        raise ConfigError(
            f"dataset {ds.name!r} orders tied interactions with ties={ds.ties!r}, "
            f"split_seed={ds.tie_seed}, but protocol.ties={cfg.ties!r}, "
            f"protocol.split_seed={cfg.split_seed}: build the cases from "
            "split_dataset(ds, protocol)"
        )


def tied_at_split(rows: Sequence[Interaction], split: Split) -> bool:
    """Whether the ``split`` target shares its timestamp with another of the user's
    interactions (then the tie rule, not time, decided which one is held out)."""
    cut = len(rows) - (1 if split == "test" else 2)
    if cut < 0:
        return False
    ts = rows[cut].timestamp
    return any(rows[n].timestamp == ts for n in (cut - 1, cut + 1) if 0 <= n < len(rows))


def train_interactions(ds: Dataset) -> list[Interaction]:
    """Every user's interactions minus the last two (validation and test targets)."""
    return [r for rows in ds.by_user.values() for r in rows[:-2]]


@dataclass(frozen=True)
class Eligibility:
    """How ``min_history`` and ``users`` chose the evaluated users (manifest.json)."""

    min_history: int
    users: int  # in the dataset
    eligible: int  # with at least min_history items before the validation target
    dropped: int  # the others
    sampled: int  # evaluated: a seeded sample of protocol.users eligible users
    # Eligible users whose test (validation) target shares its timestamp with another of
    # their interactions, and the rule that ordered those ties (protocol.ties).
    tied_test: int = 0
    tied_valid: int = 0
    ties: str = "random"
    split_seed: int = 0

    def describe(self) -> str:
        return (
            f"{self.eligible} of {self.users} users eligible (min_history {self.min_history}), "
            f"{self.dropped} dropped; {self.sampled} sampled\n{self.describe_ties()}"
        )

    def describe_ties(self) -> str:
        rule = (
            f"a seeded random draw (split_seed {self.split_seed})"
            if self.ties == "random"
            else "item id (the old rule: the held-out item is the largest id of its group)"
        )
        return (
            f"ties at the split point: {self.tied_test} of {self.eligible} eligible users at "
            f"the test target, {self.tied_valid} at the validation target; ordered by {rule}"
        )


def ties_line(recorded: dict[str, Any] | None) -> str:
    """The ties sentence of a manifest's ``eligibility`` (a run made before tie-safe splits
    recorded none: its ties were ordered by item id)."""
    if not recorded or "ties" not in recorded:
        return "ties at the split point: not recorded (a run made before tie-safe splits: by id)"
    return Eligibility(**recorded).describe_ties()


def eligibility(ds: Dataset, cfg: ProtocolConfig) -> Eligibility:
    """Count the users ``min_history`` admits; a one-line ConfigError when it admits none."""
    lengths = [len(rows) for rows in ds.by_user.values()]
    eligible = sum(n >= cfg.min_history + 2 for n in lengths)
    if not eligible:
        raise ConfigError(
            f"protocol.min_history = {cfg.min_history}: none of the {len(lengths)} users of "
            f"dataset {ds.name!r} has the {cfg.min_history + 2} interactions it needs "
            f"({cfg.min_history} before the validation target, then the validation and test "
            f"targets); the most any user has is {max(lengths, default=0)}"
        )
    _check_ordered(ds, cfg)
    rows_of = [rows for rows in ds.by_user.values() if len(rows) >= cfg.min_history + 2]
    return Eligibility(
        cfg.min_history,
        len(lengths),
        eligible,
        len(lengths) - eligible,
        min(eligible, cfg.users),
        tied_test=sum(tied_at_split(rows, "test") for rows in rows_of),
        tied_valid=sum(tied_at_split(rows, "valid") for rows in rows_of),
        ties=cfg.ties,
        split_seed=cfg.split_seed,
    )


def eligible_users(ds: Dataset, cfg: ProtocolConfig) -> list[str]:
    """Users with at least ``min_history`` items before the validation target, then a seeded
    sample of ``users`` of them (all of them if fewer), in sorted order. None eligible is a
    ConfigError (:func:`eligibility`)."""
    eligibility(ds, cfg)
    users = sorted(u for u, rows in ds.by_user.items() if len(rows) >= cfg.min_history + 2)
    if len(users) > cfg.users:
        users = sorted(random.Random(cfg.seed).sample(users, cfg.users))
    return users


def split_user(rows: Sequence[Interaction], split: Split) -> tuple[tuple[str, ...], str]:
    cut = len(rows) - (1 if split == "test" else 2)
    return tuple(r.item_id for r in rows[:cut]), rows[cut].item_id


def visible(history: tuple[str, ...], max_history: int | None) -> tuple[str, ...]:
    """The part of a history the systems see: its last ``max_history`` items (or all)."""
    return history[-max_history:] if max_history else history


def history_rows(ds: Dataset, case: EvalCase) -> list[Interaction]:
    """The interactions behind ``case.history`` (with their ratings), strictly before the
    target: what a profile may be built from without seeing the label."""
    rows = ds.by_user[case.user_id]
    cut = len(rows) - (1 if case.split == "test" else 2)
    shown = list(rows[cut - len(case.history) : cut]) if case.history else []
    if tuple(r.item_id for r in shown) != case.history:
        raise ValueError(f"user {case.user_id!r}: case history does not match the dataset")
    return shown


# (history ids, exclude ids, n) -> ranked ids
RetrieveFn = Callable[[Sequence[str], set[str], int], list[str]]


def build_cases(
    ds: Dataset,
    cfg: ProtocolConfig,
    split: Split,
    popularity: dict[str, int] | None = None,
    retrieve: RetrieveFn | None = None,
) -> list[EvalCase]:
    """Candidate sets for every eligible user (see the module docstring)."""
    _check_ordered(ds, cfg)
    if cfg.kind == "retriever" and retrieve is None:
        raise ConfigError(f"protocol.kind {cfg.kind!r} needs a retriever")
    if cfg.kind == "popularity" and popularity is None:
        raise ConfigError("protocol.kind 'popularity' needs training popularity counts")
    all_ids = sorted(ds.items)
    cases = []
    for user in eligible_users(ds, cfg):
        rows = ds.by_user[user]
        history, target = split_user(rows, split)
        history = visible(history, cfg.max_history)
        # Everything the user ever interacted with is "seen": never a negative.
        seen = {r.item_id for r in rows}
        n_neg = cfg.n_candidates - 1
        rng = random.Random(user_seed(cfg.seed, user, split))
        if cfg.kind == "two-stage":
            # Every system retrieves its own n candidates from the whole catalog.
            cases.append(EvalCase(user, split, history, target, ()))
            continue
        if cfg.kind == "sampled":
            pool = [i for i in all_ids if i not in seen]
            negatives = rng.sample(pool, min(n_neg, len(pool)))
        elif cfg.kind == "popularity":
            assert popularity is not None
            pool = [i for i in all_ids if i not in seen and popularity.get(i, 0) > 0]
            weights = np.array([popularity[i] for i in pool], dtype=float)
            gen = np.random.default_rng(user_seed(cfg.seed, user, split + ":pop"))
            picked = gen.choice(
                len(pool), size=min(n_neg, len(pool)), replace=False, p=weights / weights.sum()
            )
            negatives = [pool[int(n)] for n in picked]
        else:
            assert retrieve is not None
            negatives = retrieve(history, seen, n_neg)
        cands = [target, *negatives]
        rng.shuffle(cands)
        cases.append(EvalCase(user, split, history, target, tuple(cands)))
    return cases


def retriever_recall(cases: Sequence[EvalCase]) -> float:
    """Share of cases whose target is among the candidates (two-stage recall@N)."""
    return sum(c.target_in_candidates for c in cases) / len(cases) if cases else 0.0
