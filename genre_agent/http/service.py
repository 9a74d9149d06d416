"""What one `genre serve` process holds: one Recommender (one engine), its stores, sessions.

Every request shares these objects; the endpoints are thin calls into them. ``fast`` is the
same pipeline without the LLM (no LLM ranking, no rationales), sharing the stores and the
loaded sources: it serves ``explain=false`` and is the list a request falls back to when
the LLM fails before ranking.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from genre_agent.catalog.items import Item
from genre_agent.config import Config
from genre_agent.embedders import Embedder
from genre_agent.errors import GenreError
from genre_agent.experiments.merge import interleaved
from genre_agent.experiments.serving import ExperimentRouter, Pick
from genre_agent.http.budget import budgeted_call, budgeted_stream
from genre_agent.llm.base import LLM
from genre_agent.ranking import needs, needs_llm
from genre_agent.service.cached import CachedAnswers
from genre_agent.service.chat import ChatSession, SessionStore
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import HistoryEntry
from genre_agent.storage.backends import open_exposures
from genre_agent.storage.cache import RecommendationCache, open_cache
from genre_agent.types import Recommendation, StreamEvent


def _note_key(note: str) -> str:
    """What a note is about: "note: itemknn was fitted on ..." -> "note: itemknn was fitted
    on" (the numbers after it change)."""
    found = re.match(r"note: \S+ was fitted (on|with)", note)
    return found.group(0) if found else note


def fast_config(cfg: Config) -> Config:
    """``cfg`` without the LLM: no rationales, a ranker that needs the LLM replaced by the
    mode it declares for that (``Needs.without_llm``), and no cold "few" profile."""
    update: dict[str, Any] = {"rationale_top_r": 0}
    if needs(cfg).llm:
        update.update(mode=needs(cfg).without_llm, fusion_weight=1.0)
    fallback = tuple(f for f in cfg.cold.fallback if f != "profile")
    return cfg.model_copy(
        update={
            "ranking": cfg.ranking.model_copy(update=update),
            "cold": cfg.cold.model_copy(update={"fallback": fallback}),
        }
    )


def wanted_rationales(cfg: Config, k: int | None) -> int:
    """How many top items an explained answer should carry a rationale for."""
    n = k or cfg.ranking.k
    if needs(cfg).explains_inline:
        return n
    return min(cfg.ranking.rationale_top_r, n)


def bypassed(ev: StreamEvent) -> StreamEvent:
    """``ev`` with ``trace.cache = "bypass"`` on its recommendation (an LLM answer)."""
    if ev.recommendation is None:
        return ev
    trace = ev.recommendation.trace.model_copy(update={"cache": "bypass"})
    return ev.model_copy(
        update={"recommendation": ev.recommendation.model_copy(update={"trace": trace})}
    )


def tagged(ev: StreamEvent, pick: Pick) -> StreamEvent:
    """``ev`` with its recommendation's trace naming the experiment and variant."""
    if ev.recommendation is None:
        return ev
    trace = ev.recommendation.trace.model_copy(
        update={"experiment": pick.experiment.name, "variant": pick.variant}
    )
    return ev.model_copy(
        update={"recommendation": ev.recommendation.model_copy(update={"trace": trace})}
    )


class Arm:
    """What serves one configuration: its Recommender, the fast twin (no LLM, sharing its
    stores and sources) and both behind the per-user cache."""

    def __init__(self, rec: Recommender, cache: RecommendationCache, top_n: int) -> None:
        self.rec = rec
        self.fast = Recommender(
            fast_config(rec.config), rec.store, rec.interactions, sources=rec.sources
        )
        self.cached_fast = CachedAnswers(self.fast, cache, top_n)
        self.cached_rec = CachedAnswers(self.rec, cache, top_n)


class Service:
    """The process-wide state of the HTTP service (see module doc)."""

    def __init__(
        self, config: Config, rec: Recommender, cache: RecommendationCache | None = None
    ) -> None:
        self.config = config
        self.rec = rec
        # The per-user cache (service.cache_url): the fast path and an explained answer
        # that needs no LLM are read from it; the rest says trace.cache = "bypass".
        self.cache = cache if cache is not None else open_cache(config)
        top_n = config.service.cache_top_n
        self.arm = Arm(rec, self.cache, top_n)
        self.fast, self.cached_fast, self.cached_rec = (
            self.arm.fast,
            self.arm.cached_fast,
            self.arm.cached_rec,
        )
        # Online experiments: a variant's arm shares the stores and the engine; its own
        # sources follow its config (the cache key names the config, so arms never mix).
        self.experiments: ExperimentRouter[Arm] = ExperimentRouter(
            config,
            lambda cfg: Arm(
                Recommender(cfg, rec.store, rec.interactions, announce=rec.announce),
                self.cache,
                top_n,
            ),
            lambda: open_exposures(config, rec.interactions),
        )
        self.budget_s = config.service.llm_budget_s
        self._sessions: SessionStore | None = None
        # Only for sessions that exist (checked first), and dropped with them: an unknown
        # id never adds one, so memory cannot grow with made-up ids.
        self._session_locks: dict[str, threading.Lock] = {}
        # Notes that hold for every answer (a fitted model older than the store): announced
        # once while the sources load, and added to each answer's trace.notes.
        self.notes: list[str] = []
        self._locks_lock = threading.Lock()
        self.ready = False
        self.load_error: str | None = None
        self.load_seconds = 0.0

    @classmethod
    def from_config(
        cls,
        config: Config,
        llm: LLM | None = None,
        embedder: Embedder | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> Service:
        notes: list[str] = []

        def noted(msg: str) -> None:
            if msg.startswith("note:"):
                # A source rebuilt later (new items indexed) says it again with new counts:
                # the newer note replaces the older one about the same thing.
                key = _note_key(msg)
                notes[:] = [n for n in notes if _note_key(n) != key] + [msg]
            if announce is not None:
                announce(msg)

        rec = Recommender.from_config(config, llm=llm, embedder=embedder, announce=noted)
        service = cls(config, rec)
        service.notes = notes  # the same list: sources rebuilt later add to it
        return service

    # -- lifecycle ----------------------------------------------------------------------
    def load(self) -> None:
        """Open the stores, build the configured sources (fitted models included) and, when
        the config explains or ranks with the LLM, load the engine. Idempotent."""
        if self.ready:
            return
        t0 = time.perf_counter()
        try:
            self.rec.store.count()
            self.rec.sources.fusion()
            if needs_llm(self.rec.config):
                _ = self.rec.llm
            for exp in self.config.service.experiments:
                for v in exp.variants if exp.enabled else ():
                    self.experiments.arm(exp.name, v.name).rec.sources.fusion()
            self.sessions()
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            raise
        self.load_seconds = time.perf_counter() - t0
        self.ready = True

    def close(self) -> None:
        self.ready = False
        if self._sessions is not None:
            self._sessions.close()
        self.rec.close()

    # -- recommending -------------------------------------------------------------------
    def stream(
        self,
        explain: bool,
        user_id: str | None = None,
        history: Sequence[HistoryEntry] | None = None,
        query: str | None = None,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        exclude: Sequence[str] = (),
        request_id: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Events of one recommendation: "ranked", then rationales, then "done" (flagged
        when the LLM stage ran out of budget or failed; see http/budget.py). A user in an
        experiment is served by their variant's arm (interleaved: both, merged), the
        trace names both, and the answer's exposure is logged under ``request_id``."""
        args: dict[str, Any] = dict(
            user_id=user_id, history=history, query=query, k=k, filters=filters, exclude=exclude
        )
        pick = self.experiments.pick(user_id)
        if pick is None:
            yield from self._stream(self.arm, explain, args)
        elif pick.variant is None:
            yield from self._interleaved(pick, args, request_id)
        else:
            arm = self.experiments.arm(pick.experiment.name, pick.variant)
            for ev in self._stream(arm, explain, args):
                ev = tagged(ev, pick)
                if ev.kind == "done" and ev.recommendation is not None:
                    self.experiments.log(pick, ev.recommendation, request_id)
                yield ev

    def _stream(self, arm: Arm, explain: bool, args: dict[str, Any]) -> Iterator[StreamEvent]:
        if not explain or not needs_llm(arm.rec.config):
            cached = arm.cached_rec if explain else arm.cached_fast
            rec = cached.recommend(**args)
            yield StreamEvent(kind="ranked", recommendation=rec)
            yield StreamEvent(kind="done", recommendation=rec)
            return
        events = budgeted_stream(
            lambda: arm.rec.recommend_stream(**args),
            lambda: arm.fast.recommend(**args),
            self.budget_s,
            wanted_rationales(arm.rec.config, args.get("k")),
        )
        yield from (bypassed(ev) for ev in events) if self.cache.enabled else events

    def _interleaved(
        self, pick: Pick, args: dict[str, Any], request_id: str | None
    ) -> Iterator[StreamEvent]:
        """Both variants' fast answers, merged by team draft (no rationales)."""
        exp = pick.experiment
        answers = {
            v.name: self.experiments.arm(exp.name, v.name).cached_fast.recommend(**args)
            for v in exp.variants
        }
        k = args.get("k") or self.rec.config.ranking.k
        rid = request_id or uuid.uuid4().hex
        rec, teams = interleaved(exp.name, answers, k, rid)
        self.experiments.log(pick, rec, rid, teams)
        yield StreamEvent(kind="ranked", recommendation=rec)
        yield StreamEvent(kind="done", recommendation=rec)

    def recommend(self, explain: bool, **args: Any) -> Recommendation:
        done: Recommendation | None = None
        for ev in self.stream(explain, **args):
            if ev.kind == "done":
                done = ev.recommendation
        assert done is not None  # every stream ends with "done"
        return done

    def rank(self, explain: bool, candidates: Sequence[str | Item], **args: Any) -> Recommendation:
        if not explain or not needs_llm(self.rec.config):
            return (self.rec if explain else self.fast).rank(candidates, **args)
        return budgeted_call(
            lambda: self.rec.rank(candidates, **args),
            lambda: self.fast.rank(candidates, **args),
            self.budget_s,
            wanted_rationales(self.rec.config, args.get("k")),
        )

    # -- chat ---------------------------------------------------------------------------
    def sessions(self) -> SessionStore:
        if self._sessions is None:
            self._sessions = SessionStore.from_config(self.rec.config)
        return self._sessions

    def session_lock(self, session_id: str) -> threading.Lock:
        """One lock per existing session: turns of one session run one at a time. A
        GenreError for an unknown id, and no lock is made for it."""
        with self._locks_lock:
            lock = self._session_locks.get(session_id)
            if lock is None:
                if not self.sessions().exists(session_id):
                    raise GenreError(f"no chat session {session_id!r}")
                lock = self._session_locks[session_id] = threading.Lock()
            return lock

    def delete_session(self, session_id: str) -> bool:
        """Delete a session (after any turn running in it); False if there was none."""
        try:
            lock = self.session_lock(session_id)
        except GenreError:
            return False
        with lock:
            deleted = self.sessions().delete(session_id)
        with self._locks_lock:
            self._session_locks.pop(session_id, None)
        return deleted

    def session_locks(self) -> int:
        """How many session locks are held (tests: unknown ids add none)."""
        with self._locks_lock:
            return len(self._session_locks)

    def start_session(self, user_id: str | None, profile: str | None) -> ChatSession:
        session = ChatSession.start(self.rec, self.sessions(), user_id=user_id, profile=profile)
        return self._budgeted(session)

    def resume_session(self, session_id: str) -> ChatSession:
        return self._budgeted(ChatSession.resume(self.rec, self.sessions(), session_id))

    def _budgeted(self, session: ChatSession) -> ChatSession:
        """Turns over HTTP keep service.llm_budget_s like recommend: past it, or with the
        LLM failing, a turn answers flagged (ranked by ``fast``, without rationales)."""
        session.budget_s, session.fallback_rec = self.budget_s, self.fast
        return session
