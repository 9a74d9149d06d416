"""Stage 1, resolve: a request's history, profile and retrieval query, and the cold rule.

Cold start is decided here and nowhere else (``cold`` in config.py), so every door
(Python, CLI, HTTP, the harness) answers a new user the same way:

- a stored user (``user_id`` without a ``history``) whose usable history (items still in
  the catalog, not forgotten) has fewer than ``cold.min_history`` items is cold; a history
  the caller passes is taken as given, and is cold only when it is empty;
- a cold request is answered from the first of ``cold.fallback`` it can use: "profile"
  (its given or stored profile, else an LLM profile of its few items: strategy "few"),
  "query" (its text: "stated"), "popularity" (the most popular items: "popular").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from genre_agent.config import Config
from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM
from genre_agent.service.requests import (
    HistoryEntry,
    RecRequest,
    ResolvedHistory,
    check_k,
    resolve_history,
)
from genre_agent.storage.backends import exists as stores_exist
from genre_agent.storage.backends import open_profiles
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery

# Why a cold request got the popularity list (Trace.notes).
COLD_NOTE = (
    "cold start: no history, query or profile, so these are the most popular items "
    "(popularity source; no LLM ranking, no rationales)"
)


@dataclass
class Resolved:
    """One request, resolved: what retrieval, ranking and the trace read."""

    req: RecRequest
    k: int
    history: ResolvedHistory
    query: RetrievalQuery
    rerank_profile: str | None
    profile: str | None = None
    # "personal" (warm), or a cold request's fallback: "few", "stated", "popular".
    strategy: str = "personal"
    notes: list[str] = field(default_factory=list)
    # When the latest history interaction happened (None: no timestamps).
    user_ts: float | None = None
    seconds: float = 0.0
    # Filled by the retrieve stage: the candidates and the signals that produced them.
    candidates: list[Candidate] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)

    @property
    def profile_used(self) -> tuple[str, ...]:
        """Where the profile went: "retrieval", "rerank", both or neither."""
        on = (("retrieval", self.query.profile), ("rerank", self.rerank_profile))
        return tuple(name for name, used in on if used)


class ProfileSource:
    """The LLM profiles a request may read (stored ones, or one written on demand)."""

    def __init__(self, config: Config, llm: Callable[[], LLM]) -> None:
        self.config = config
        self._llm = llm
        self._profiles: Any = None

    def profiles(self) -> Any:
        if self._profiles is None:
            from genre_agent.service.profiles import Profiles  # it needs the LLM package

            p = self.config.profile
            self._profiles = Profiles(self._llm(), open_profiles(self.config), p)
        return self._profiles

    def forgotten(self, user_id: str) -> set[str]:
        if not stores_exist(self.config, "profiles"):
            return set()
        store = open_profiles(self.config)
        try:
            return store.forgotten(user_id)
        finally:
            store.close()

    def stored(self, user_id: str | None, history: ResolvedHistory) -> str | None:
        """The user's stored (or newly built) profile when a profile switch is on."""
        p = self.config.profile
        if not (p.use_in_retrieval or p.use_in_rerank) or user_id is None:
            return None
        return self.written(user_id, history.liked, history.disliked)

    def written(
        self, user_id: str, liked: Sequence[Any], disliked: Sequence[Any] = ()
    ) -> str | None:
        """A profile of these items (reused while they are unchanged); None without any."""
        if not liked and not disliked:
            return None
        record = self.profiles().build(user_id, list(liked), list(disliked))
        return str(record.profile.as_text())


class Resolver:
    """Builds :class:`Resolved` requests from the stores (see module doc)."""

    def __init__(
        self,
        config: Config,
        interactions: InteractionBackend,
        lookup: Callable[[Sequence[str]], Any],
        allowed: Callable[[dict[str, Any]], Any],
        profiles: ProfileSource,
    ) -> None:
        self.config = config
        self.interactions = interactions
        self.lookup = lookup
        self.allowed = allowed
        self.profiles = profiles

    def resolve(self, req: RecRequest) -> Resolved:
        t0 = time.perf_counter()
        k = check_k(req.k, self.config.ranking.k)
        notes: list[str] = []
        stored = req.history is None and req.user_id is not None
        rows = self.interactions.history(req.user_id) if stored and req.user_id else []
        history = self.history(req, rows, notes)
        cold = len(history.items) < (self.config.cold.min_history if stored else 1)
        strategy, profile, scope_both = self.profile_for(req, history, cold)
        query = self.query(req, history, profile, scope_both, strategy)
        p = self.config.profile
        rerank = profile if (scope_both or p.use_in_rerank) else None
        if strategy == "popular":
            notes.append(COLD_NOTE)
        src: Sequence[Any] = req.history if req.history is not None else rows
        times = [r.timestamp for r in src if isinstance(r, Interaction) and r.timestamp]
        return Resolved(
            req,
            k,
            history,
            query,
            rerank,
            profile,
            strategy,
            notes,
            max(times) if times else None,
            time.perf_counter() - t0,
        )

    def history(
        self, req: RecRequest, rows: Sequence[HistoryEntry], notes: list[str]
    ) -> ResolvedHistory:
        """The request's history; a stored user whose items all left the catalog is
        resolved as having none (cold), with a note."""
        if req.history is not None:
            return resolve_history(self.config, req.history, self.lookup, req.exclude)
        forgotten = self.profiles.forgotten(req.user_id) if req.user_id is not None else set()
        try:
            return resolve_history(self.config, rows, self.lookup, req.exclude, forgotten)
        except GenreError:
            gone = list(dict.fromkeys(str(getattr(r, "item_id", r)) for r in rows))
            notes.append(
                f"cold start: none of the user's {len(gone)} history items is in the "
                f"catalog any more ({', '.join(gone[:5])}{', ...' if len(gone) > 5 else ''})"
            )
            return resolve_history(self.config, [], self.lookup, req.exclude, forgotten)

    def profile_for(
        self, req: RecRequest, history: ResolvedHistory, cold: bool
    ) -> tuple[str, str | None, bool]:
        """(strategy, profile text, whether the profile goes into retrieval and rerank)."""
        profile = req.profile
        both = req.profile_scope == "both" and profile is not None
        if profile is None:
            profile = self.profiles.stored(req.user_id, history)
        if not cold:
            return "personal", profile, both
        for fallback in self.config.cold.fallback:
            if fallback == "profile" and history.items:
                # Few items say little on their own: their profile drives retrieval and rerank.
                user = req.user_id or "anonymous"
                return "few", req.profile or self.profiles.written(user, history.items), True
            if fallback == "profile" and profile:
                return "personal", profile, both
            if fallback == "query" and req.query:
                return "stated" if not history.items else "personal", profile, both
            if fallback == "popularity":
                return "popular", profile, both
        if not history.items and not req.query and not profile:
            raise GenreError(
                f"cold request: nothing to answer from (no history, query or profile) and "
                f"cold.fallback {list(self.config.cold.fallback)} has no 'popularity'"
            )
        return "personal", profile, both

    def query(
        self,
        req: RecRequest,
        history: ResolvedHistory,
        profile: str | None,
        both: bool,
        strategy: str,
    ) -> RetrievalQuery:
        use_ret = both or self.config.profile.use_in_retrieval
        if profile and not use_ret and not history.items and not req.query:
            use_ret = True  # nothing else can seed retrieval
        return RetrievalQuery(
            history=history.items,
            text=req.query,
            profile=profile if use_ret else None,
            where=req.filters or None,
            exclude_ids=history.exclude,
            allowed_ids=self.allowed(req.filters) if req.filters else None,
            user_id=req.user_id,
        )
