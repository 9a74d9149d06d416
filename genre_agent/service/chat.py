"""Multi-turn chat sessions: message reading, filtered retrieval, SQLite state.

Each user message becomes an ``Intent``. ``chat.intent`` says who reads it (the
``INTENT_READERS`` table): the deterministic normaliser over the catalog's vocabulary
(genre_agent.service.normalise), the LLM by one constrained generation (a regex built from
the schema: genres are an enum of the configured genres, references are an enum of the
positions of the last reply's picks), the hybrid of both, or nobody (the message is the
query). A title the user names ("like Alien") is found only by the normaliser, in the
catalog; it seeds retrieval, its genres become an any-of filter, and it is never a pick. The
intent has no item-id field at all, so a user message cannot make the model pick items;
picks come only from Recommender.recommend, whose ranker is constrained to its candidates.
Every intent is re-validated: schema failures raise IntentError, softer problems (year_min >
year_max, a genre both wanted and excluded) are dropped and listed in the turn's
``violations``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from genre_agent.config import ChatConfig
from genre_agent.errors import GenreError
from genre_agent.llm.base import GenRequest, Message
from genre_agent.llm.deadline import llm_deadline
from genre_agent.llm.faults import LLMTimeout, LLMUnavailable, one_line
from genre_agent.prompting import RenderedPrompt, render
from genre_agent.service.chat_state import Pick, SessionState, SessionStore, Turn
from genre_agent.service.intent import (
    Intent,
    IntentError,
    build_where,
    check_intent,
    intent_regex,
    matches_where,
    validate_intent,
)
from genre_agent.service.normalise import Normaliser, Reading
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import RecRequest

# The intent's and the session state's names stay importable from here (their home before
# the split).
__all__ = [
    "INTENT_READERS",
    "ChatSession",
    "Intent",
    "IntentError",
    "IntentReader",
    "Pick",
    "SessionState",
    "SessionStore",
    "Turn",
    "build_where",
    "catalog_normaliser",
    "check_intent",
    "intent_from_reading",
    "intent_regex",
    "matches_where",
    "merge_reading",
    "scripted_intents",
    "validate_intent",
]


_NORMALISERS: weakref.WeakKeyDictionary[Recommender, tuple[object, Normaliser]] = (
    weakref.WeakKeyDictionary()
)
_NORMALISERS_LOCK = threading.Lock()


def catalog_normaliser(rec: Recommender, genres: Sequence[str]) -> Normaliser:
    """The normaliser over ``rec``'s catalog, built once per catalog (rebuilt after index)."""
    catalog = rec.sources.catalog()
    with _NORMALISERS_LOCK:
        hit = _NORMALISERS.get(rec)
        if hit is not None and hit[0] is catalog and tuple(hit[1].vocab.genres) == tuple(genres):
            return hit[1]
        norm = Normaliser.from_items(catalog.values(), genres, rec.interactions.item_counts())
        _NORMALISERS[rec] = (catalog, norm)
        return norm


def intent_from_reading(reading: Reading, cfg: ChatConfig) -> Intent:
    return Intent(
        query=reading.query[: cfg.query_chars],
        year_min=reading.year_min,
        year_max=reading.year_max,
        genres_include=list(reading.genres_include)[:10],
        genres_exclude=list(reading.genres_exclude)[:10],
        more_like=list(reading.more_like),
        exclude_picks=list(reading.exclude_picks),
        repeat_ok=reading.repeat_ok,
        reset=reading.reset,
    )


def merge_reading(reading: Reading, llm: Intent, cfg: ChatConfig) -> Intent:
    """The hybrid's intent: the normaliser's findings stand; the LLM only adds to them (its
    regex already held the normaliser's years, genres and positions fixed). Reset and
    repeat come from the normaliser alone: a small model sets them without cause."""
    base = intent_from_reading(reading, cfg)
    include = [*base.genres_include]
    exclude = [*base.genres_exclude]
    include += [g for g in llm.genres_include if g not in include and g not in exclude]
    exclude += [g for g in llm.genres_exclude if g not in exclude and g not in include]
    return base.model_copy(
        update={
            "query": base.query or llm.query,
            "year_min": base.year_min if base.year_min is not None else llm.year_min,
            "year_max": base.year_max if base.year_max is not None else llm.year_max,
            "genres_include": include[:10],
            "genres_exclude": exclude[:10],
            "more_like": base.more_like or llm.more_like,
            "exclude_picks": base.exclude_picks or llm.exclude_picks,
        }
    )


def _read_query(session: ChatSession, message: str, turn: Turn) -> tuple[Intent, Reading | None]:
    turn.read_by = "query"
    return Intent(query=message[: session.cfg.query_chars]), None


def _read_normaliser(
    session: ChatSession, message: str, turn: Turn
) -> tuple[Intent, Reading | None]:
    reading = session.read(message)
    turn.read_by = "normaliser"
    return intent_from_reading(reading, session.cfg), reading


def _read_llm(session: ChatSession, message: str, turn: Turn) -> tuple[Intent, Reading | None]:
    turn.read_by = "llm"
    return session.llm_intent(message, turn), None


def _read_hybrid(session: ChatSession, message: str, turn: Turn) -> tuple[Intent, Reading | None]:
    reading = session.read(message)
    if reading.settled:
        turn.read_by = "normaliser"
        return intent_from_reading(reading, session.cfg), reading
    turn.read_by = "normaliser+llm"
    try:
        llm = session.llm_intent(message, turn, seed=reading)
    except IntentError as exc:
        # Flagged, not silent: the turn says the LLM failed and the normaliser's reading
        # alone was used.
        turn.read_by = "normaliser"
        turn.violations.append(
            {
                "reason": "invalid LLM intent; the normaliser's reading was used",
                "detail": str(exc)[:300],
            }
        )
        return intent_from_reading(reading, session.cfg), reading
    return merge_reading(reading, llm, session.cfg), reading


IntentReader = Callable[["ChatSession", str, Turn], tuple[Intent, Reading | None]]
INTENT_READERS: dict[str, IntentReader] = {
    "query": _read_query,
    "normaliser": _read_normaliser,
    "llm": _read_llm,
    "hybrid": _read_hybrid,
}


class ChatSession:
    """One conversation. Sessions share the Recommender but no state; resumable by id."""

    def __init__(
        self,
        rec: Recommender,
        store: SessionStore,
        state: SessionState,
        cfg: ChatConfig | None = None,
        profile: str | None = None,
    ) -> None:
        self.rec = rec
        self.store = store
        self.state = state
        self.cfg = cfg or rec.config.chat
        self.profile = profile
        self._lock = threading.Lock()
        # A wall-clock budget for each turn's LLM calls (the HTTP service sets
        # service.llm_budget_s), and the no-LLM recommender a turn falls back to past it.
        # None: no budget, and an LLM failure raises (the CLI's behaviour).
        self.budget_s: float | None = None
        self.fallback_rec: Recommender | None = None

    @classmethod
    def start(
        cls,
        rec: Recommender,
        store: SessionStore,
        user_id: str | None = None,
        profile: str | None = None,
        session_id: str | None = None,
    ) -> ChatSession:
        state = SessionState(
            id=session_id or uuid.uuid4().hex[:12], user_id=user_id, created=time.time()
        )
        store.save(state)
        return cls(rec, store, state, profile=profile)

    @classmethod
    def resume(
        cls, rec: Recommender, store: SessionStore, session_id: str, profile: str | None = None
    ) -> ChatSession:
        return cls(rec, store, store.load(session_id), profile=profile)

    @property
    def id(self) -> str:
        return self.state.id

    def read(self, message: str) -> Reading:
        """The normaliser's reading of ``message`` against the last reply's picks."""
        norm = catalog_normaliser(self.rec, self.cfg.genres)
        return norm.read(message, [p.year for p in self.state.last_picks])

    def llm_intent(self, message: str, turn: Turn, seed: Reading | None = None) -> Intent:
        """One constrained generation of the intent (``seed`` fixes what is known)."""
        req, prompt = self.intent_request(message, seed)
        turn.intent_prompt_sha256 = prompt.sha256
        turn.intent_template_sha256 = prompt.template_sha256
        llm = self.rec.llm
        turn.model_id = llm.model_id
        out = llm.generate([req])[0]
        intent, violations = validate_intent(out.text, self.cfg, len(self.state.last_picks))
        turn.violations += violations
        return intent

    def intent_request(
        self, message: str, seed: Reading | None = None
    ) -> tuple[GenRequest, RenderedPrompt]:
        st = self.state
        earlier = (
            [t.message for t in st.turns][-self.cfg.context_turns :]
            if (self.cfg.context_turns)
            else []
        )
        prompt = render(
            self.cfg.template,
            genres=list(self.cfg.genres),
            earlier=earlier,
            last_picks=[{"title": p.title, "genres": p.genres} for p in st.last_picks],
            active=st.active_text(),
            message=message,
        )
        n_last = len(st.last_picks)
        req = GenRequest(
            messages=(Message("system", prompt.system), Message("user", prompt.user)),
            regex=intent_regex(self.cfg, n_last, seed),
            max_tokens=self.cfg.max_intent_tokens,
            temperature=self.rec.config.llm.temperature,
            seed=self.rec.config.llm.seed,
            hint={
                "task": "intent",
                "message": message,
                "n_last": n_last,
                "genres": list(self.cfg.genres),
            },
        )
        return req, prompt

    def send(self, message: str) -> Turn:
        """One user turn: intent -> merged search -> recommend -> saved turn.

        With ``budget_s`` set, every LLM call of the turn ends within it; a turn whose LLM
        timed out or failed still answers, flagged in ``fallback`` and ``notes``.
        """
        with self._lock, llm_deadline(self.budget_s):
            return self._send(message)

    def _llm_failed(
        self, turn: Turn, exc: LLMUnavailable, instead: str, needs_fallback: bool = False
    ) -> None:
        """Flag ``turn``: the LLM failed (or ran out of budget) and ``instead`` was done.
        Without a budget (or the fallback recommender it needs) ``exc`` raises as before."""
        if self.budget_s is None or (needs_fallback and self.fallback_rec is None):
            raise exc
        reason = "llm_timeout" if isinstance(exc, LLMTimeout) else "llm_unavailable"
        turn.fallback = turn.fallback or reason
        turn.notes.append(f"{instead}: {type(exc).__name__}: {one_line(exc, 240)}")

    def _recommend(self, request: RecRequest, turn: Turn) -> Any:
        try:
            return self.rec.recommend_many([request])[0]
        except LLMUnavailable as exc:
            self._llm_failed(turn, exc, "picks ranked without the LLM and without rationales", True)
            assert self.fallback_rec is not None
            return self.fallback_rec.recommend_many([request])[0]

    def _send(self, message: str) -> Turn:
        t0 = time.perf_counter()
        st = self.state
        turn = Turn(n=len(st.turns) + 1, message=message)
        intent, violations, reading = self._read_intent(message, turn, t0)
        turn.intent = intent
        turn.violations += violations
        references, reference_genres = self._references(reading, turn)
        st.apply(intent, references, reference_genres)
        turn.where = st.where()
        exclude = set(st.rejected) | set(st.references)
        if not intent.repeat_ok:
            exclude |= set(st.shown)
        seeds = [i for i in st.seeds if i not in st.rejected]
        if not seeds and not st.query and not st.user_id and not self.profile and not turn.where:
            turn.error = "tell me what you would like (a title, a mood, a genre)"
        else:
            self._answer(turn, seeds, exclude)
        turn.seconds = time.perf_counter() - t0
        st.turns.append(turn)
        self.store.save(st)
        return turn

    def _read_intent(
        self, message: str, turn: Turn, t0: float
    ) -> tuple[Intent, list[dict[str, Any]], Reading | None]:
        """The turn's checked intent, its violations and the normaliser's reading (if it ran);
        an invalid intent is recorded in the saved turn and raises."""
        st = self.state
        try:
            intent, reading = INTENT_READERS[self.cfg.intent](self, message, turn)
            intent, violations = check_intent(intent, self.cfg, len(st.last_picks))
        except LLMUnavailable as exc:
            # The LLM reader failed or ran out of the turn's budget: the normaliser needs no
            # LLM, so its reading answers, flagged.
            self._llm_failed(turn, exc, "no intent from the LLM; the normaliser's reading was used")
            reading = self.read(message)
            turn.read_by = "normaliser"
            intent, violations = check_intent(
                intent_from_reading(reading, self.cfg), self.cfg, len(st.last_picks)
            )
        except IntentError as exc:
            turn.error = str(exc)
            turn.violations.append({"reason": "invalid intent", "detail": str(exc)[:300]})
            turn.seconds = time.perf_counter() - t0
            st.turns.append(turn)
            self.store.save(st)
            raise
        return intent, violations, reading

    def _references(self, reading: Reading | None, turn: Turn) -> tuple[list[str], list[str]]:
        """The catalog ids of the titles the message names and their configured genres; the
        reading is recorded in ``turn``."""
        references: list[str] = []
        reference_genres: list[str] = []
        if reading is not None:
            turn.reading = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(reading).items()
                if v not in ((), None, False, "")
            }
            catalog = self.rec.sources.catalog()
            references = [r for r in reading.references if r in catalog]
            for r in references:
                genres = str(catalog[r].metadata.get("genres", "")).split("|")
                reference_genres += [g for g in genres if g in self.cfg.genres]
        return references, reference_genres

    def _answer(self, turn: Turn, seeds: list[str], exclude: set[str]) -> None:
        """Recommend under the active search (relaxing the genre wishes when nothing matches
        them all) and record the picks in ``turn`` and the state."""
        st = self.state
        wheres = [turn.where]
        if self.cfg.relax_genres and (st.genres_include or st.genres_any):
            wheres.append(build_where(st.year_min, st.year_max, [], st.genres_exclude))
        for attempt, where in enumerate(wheres):
            try:
                rec = self._recommend(
                    RecRequest(
                        user_id=st.user_id,
                        history=seeds or None,
                        query=st.query or None,
                        k=self.cfg.k,
                        filters=where,
                        profile=self.profile,
                        exclude=sorted(exclude),
                        profile_scope="config",
                    ),
                    turn,
                )
            except GenreError as exc:
                turn.error = str(exc)
                break
            if not rec.items:
                turn.error = "no items match these wishes and filters"
                continue
            turn.error = None
            if attempt:
                turn.where = where
                turn.relaxed = [n for n in ("genres_include", "genres_any") if getattr(st, n)]
            break
        if turn.error is None:
            turn.rank_prompt_sha256 = rec.trace.prompt_sha256
            for it in rec.items:
                year = it.item.metadata.get("year")
                turn.picks.append(
                    Pick(
                        id=it.item.id,
                        title=it.item.title,
                        rationale=it.rationale,
                        year=year if isinstance(year, int) else None,
                        genres=str(it.item.metadata.get("genres", "")),
                    )
                )
            st.last_picks = list(turn.picks)
            for p in turn.picks:
                if p.id not in st.shown:
                    st.shown.append(p.id)

    @property
    def turns(self) -> list[Turn]:
        return list(self.state.turns)


def scripted_intents(
    intents: dict[str, dict[str, Any]] | None = None, default_query: bool = True
) -> Any:
    """A FakeLLM script for tests and demos: intent requests are answered from ``intents``
    (message -> partial intent), or with the message as the query; every other request the
    way the built-in "first" script answers it (see genre_agent.llm.fake)."""
    from genre_agent.llm.fake import FakeLLM

    table = intents or {}
    base = FakeLLM("first")

    def script(req: GenRequest) -> str:
        if req.hint.get("task") == "intent":
            msg = str(req.hint.get("message", ""))
            partial = table.get(msg, {"query": msg} if default_query else {})
            return json.dumps(Intent.model_validate(partial).model_dump())
        return base.generate([req])[0].text

    return script
