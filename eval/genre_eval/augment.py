"""What a variant adds to the ranker's input: LLM user profiles and LLM-enriched items.

The switches are the product's own config keys, read from the variant's config:

- ``profile.use_in_rerank``: each eval user's profile is written by the variant's LLM (the
  runner's CachingLLM, so a replay is identical), one batched call per batch of users, from
  that user's visible history only: the interactions strictly before the target, cut by
  ``protocol.max_history``, split into liked / rated-low by ``retrieval.min_liked_rating``
  as ``genre profile build`` does, then capped by ``profile.max_history``. The target never
  reaches the profile prompt. The profile text fills the rerank prompt's profile block.
- ``profile.use_in_retrieval`` is rejected: the protocol fixes the candidate sets (identical
  for every system, so comparisons stay paired by user); nothing in the harness retrieves
  with a query that a profile could join, so the switch would silently change nothing.
- ``enrich.enabled``: every candidate of the variant's cases is enriched (batched, cached)
  and ranked as its enriched copy, which is how the recommender shows items from an enriched
  index: with ``enrich.embed`` the summary and keywords are appended to the item text the
  prompt shows (cut at ``ranking.max_item_chars``); without it they stay in metadata, which
  no ranking prompt shows. History items are not enriched: the prompts show a history item's
  title and genres only, so its enrichment could not reach the model. An invalid enrichment
  answer leaves that item as it was (counted in the manifest), as ``genre enrich`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from genre_agent.catalog.items import Item
from genre_agent.config import Config
from genre_agent.errors import ConfigError
from genre_agent.llm.base import LLM
from genre_agent.service.enrichment import Enricher
from genre_agent.service.profiles import (
    ProfileError,
    ProfileInput,
    ProfileRecord,
    Profiles,
    ProfileStore,
)
from genre_eval.datasets import Dataset
from genre_eval.protocols import EvalCase, history_rows

Tick = Callable[[int, int], None]


def check_switches(cfg: Config, variant: str) -> None:
    """Refuse switches the harness cannot apply (see the module docstring)."""
    if cfg.profile.use_in_retrieval:
        raise ConfigError(
            f"variant {variant!r}: profile.use_in_retrieval has no effect in the offline "
            "harness (the protocol fixes every system's candidates); use profile.use_in_rerank"
        )


class VariantInputs:
    """Profiles and enriched items for one variant, built with that variant's LLM."""

    def __init__(self, cfg: Config, llm: LLM | None, ds: Dataset) -> None:
        self.cfg = cfg
        self.ds = ds
        self.profiles = (
            Profiles(llm, ProfileStore(":memory:"), cfg.profile)
            if cfg.profile.use_in_rerank and llm is not None
            else None
        )
        self.enricher = Enricher(llm, cfg.enrich) if cfg.enrich.enabled and llm else None
        self.enriched: dict[str, Item] = {}
        self.invalid: dict[str, str] = {}
        self.enrich_s = 0.0
        self.profile_failures = 0

    def enrich(self, cases: Iterable[EvalCase], batch_size: int, tick: Tick | None = None) -> None:
        """Enrich the candidates of ``cases`` not enriched yet, ``batch_size`` items per call."""
        if self.enricher is None:
            return
        ids = sorted(
            {i for c in cases for i in c.candidates} - set(self.enriched) - set(self.invalid)
        )
        t0 = time.perf_counter()
        for start in range(0, len(ids), batch_size):
            chunk = [self.ds.items[i] for i in ids[start : start + batch_size]]
            done, invalid = self.enricher.enrich(chunk)
            self.enriched.update(done)
            self.invalid.update({x["item_id"]: x["error"] for x in invalid})
            if tick:
                tick(min(start + batch_size, len(ids)), len(ids))
        self.enrich_s += time.perf_counter() - t0

    def item(self, item_id: str) -> Item:
        return self.enriched.get(item_id) or self.ds.items[item_id]

    def profiles_for(self, cases: Sequence[EvalCase]) -> dict[str, ProfileRecord | ProfileError]:
        """Each user's profile (or the error that stopped it), in one batched LLM call."""
        if self.profiles is None:
            return {}
        cut = self.cfg.retrieval.min_liked_rating
        inputs: list[ProfileInput] = []
        for case in cases:
            rows = history_rows(self.ds, case)
            items = self.ds.items
            liked = [items[r.item_id] for r in rows if r.rating is None or r.rating >= cut]
            low = [items[r.item_id] for r in rows if r.rating is not None and r.rating < cut]
            inputs.append((case.user_id, liked, low))
        built = self.profiles.build_many(inputs)
        self.profile_failures += sum(isinstance(b, ProfileError) for b in built)
        return {c.user_id: b for c, b in zip(cases, built, strict=True)}

    def record_fields(
        self, case: EvalCase, prof: ProfileRecord | ProfileError | None
    ) -> dict[str, Any]:
        """Per-user audit fields of a result line: the profile text the prompt got, and how
        many of the user's candidates were shown enriched."""
        out: dict[str, Any] = {}
        if self.profiles is not None:
            out["profile_text"] = (
                prof.profile.as_text() if isinstance(prof, ProfileRecord) else None
            )
            out["profile_violations"] = (
                len(prof.violations) if isinstance(prof, ProfileRecord) else 0
            )
        if self.enricher is not None:
            out["enriched_candidates"] = sum(i in self.enriched for i in case.candidates)
        return out

    def meta(self) -> dict[str, Any]:
        """What the manifest records about this variant's inputs (this invocation)."""
        return {
            "profile_in_rerank": self.profiles is not None,
            "profile_failures": self.profile_failures,
            "enrich": self.enricher is not None,
            "enrich_in_prompt": self.enricher is not None and self.cfg.enrich.embed,
            "enriched_items": len(self.enriched),
            "enrich_invalid": len(self.invalid),
            "enrich_seconds": self.enrich_s,
        }

    def close(self) -> None:
        if self.profiles is not None:
            self.profiles.store.close()
