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
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genre_agent.catalog.items import genre_key
from genre_agent.config import ChatConfig, Config
from genre_agent.errors import GenreError
from genre_agent.llm.base import GenRequest, Message
from genre_agent.llm.deadline import llm_deadline
from genre_agent.llm.faults import LLMTimeout, LLMUnavailable, one_line
from genre_agent.prompting import RenderedPrompt, render
from genre_agent.service.normalise import Normaliser, Reading
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import RecRequest
from genre_agent.storage.base import SessionBackend
from genre_agent.storage.sessions import SQLiteSessions


class IntentError(GenreError):
    """The LLM's intent failed validation."""


class Intent(BaseModel):
    """What one user message asks for (positions refer to the last reply's picks, 1-based)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: str = Field("", max_length=1000)
    year_min: int | None = Field(None, ge=1800, le=2100)
    year_max: int | None = Field(None, ge=1800, le=2100)
    genres_include: list[str] = Field(default_factory=list, max_length=10)
    genres_exclude: list[str] = Field(default_factory=list, max_length=10)
    more_like: list[int] = Field(default_factory=list, max_length=50)
    exclude_picks: list[int] = Field(default_factory=list, max_length=50)
    repeat_ok: bool = False
    reset: bool = False


def _alt(options: Sequence[str]) -> str:
    return "(" + "|".join(o.replace(".", r"\.").replace("+", r"\+") for o in options) + ")"


def _fixed_list(values: Sequence[str | int], more: str, room: int) -> str:
    """A JSON list that starts with ``values`` (literal) and may go on with up to ``room``
    items matching ``more``."""
    lit = ", ".join(json.dumps(v) for v in values).replace("[", r"\[").replace("+", r"\+")
    lit = lit.replace(".", r"\.")
    if room <= 0:
        return r"\[" + lit + r"\]"
    return r"\[" + lit + "(, " + more + "){0," + str(room) + r"}\]"


def intent_regex(cfg: ChatConfig, n_last: int, seed: Reading | None = None) -> str:
    """Regex of an intent answer, keys in schema order.

    ``seed``: what the normaliser already found. Its year bounds, genres and positions are
    written into the regex as literals, so the model can only add to them (the hybrid)."""
    text = r'"[^"\\\n\r\t<>]{0,' + str(cfg.query_chars) + '}"'
    year = r"(null|1[89]\d\d|20\d\d)"
    g = '"' + _alt(cfg.genres) + '"'
    genres = r"\[(" + g + "(, " + g + r"){0,4})?\]"
    if n_last:
        p = _alt([str(i) for i in range(1, n_last + 1)])
        pos = r"\[(" + p + "(, " + p + "){0," + str(n_last - 1) + r"})?\]"
    else:
        pos = r"\[\]"
    year_min = year_max = year
    include = exclude = genres
    more_like = exclude_picks = pos
    if seed is not None:
        if seed.year_min is not None:
            year_min = str(seed.year_min)
        if seed.year_max is not None:
            year_max = str(seed.year_max)
        if seed.genres_include:
            include = _fixed_list(seed.genres_include, g, 5 - len(seed.genres_include))
        if seed.genres_exclude:
            exclude = _fixed_list(seed.genres_exclude, g, 5 - len(seed.genres_exclude))
        if seed.more_like and n_last:
            more_like = _fixed_list(seed.more_like, p, 0)
        if seed.exclude_picks and n_last:
            exclude_picks = _fixed_list(seed.exclude_picks, p, 0)
    boolean = "(true|false)"
    return (
        r'\{"query": '
        + text
        + r', "year_min": '
        + year_min
        + r', "year_max": '
        + year_max
        + r', "genres_include": '
        + include
        + r', "genres_exclude": '
        + exclude
        + r', "more_like": '
        + more_like
        + r', "exclude_picks": '
        + exclude_picks
        + r', "repeat_ok": '
        + boolean
        + r', "reset": '
        + boolean
        + r"\}"
    )


def validate_intent(text: str, cfg: ChatConfig, n_last: int) -> tuple[Intent, list[dict[str, Any]]]:
    """Parse and re-validate an intent; hard failures raise, soft ones are dropped + listed."""
    try:
        intent = Intent.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise IntentError(f"intent failed schema: {str(exc)[:300]}") from exc
    return check_intent(intent, cfg, n_last)


def check_intent(
    intent: Intent, cfg: ChatConfig, n_last: int
) -> tuple[Intent, list[dict[str, Any]]]:
    """Re-validate a parsed intent (from the LLM or the normaliser) against the config."""
    hard: list[str | int] = [
        g for g in [*intent.genres_include, *intent.genres_exclude] if g not in cfg.genres
    ]
    hard += [p for p in [*intent.more_like, *intent.exclude_picks] if not 1 <= p <= n_last]
    if hard:
        raise IntentError(f"intent names unknown genres or positions: {hard}")
    violations: list[dict[str, Any]] = []
    upd: dict[str, Any] = {}
    if intent.year_min and intent.year_max and intent.year_min > intent.year_max:
        violations.append(
            {"reason": "year_min > year_max", "value": [intent.year_min, intent.year_max]}
        )
        upd.update(year_min=None, year_max=None)
    both = set(intent.genres_include) & set(intent.genres_exclude)
    if both:
        violations.append({"reason": "genre both included and excluded", "value": sorted(both)})
        upd["genres_include"] = [g for g in intent.genres_include if g not in both]
        upd["genres_exclude"] = [g for g in intent.genres_exclude if g not in both]
    for name in ("genres_include", "genres_exclude", "more_like", "exclude_picks"):
        values = upd.get(name, getattr(intent, name))
        if len(set(values)) != len(values):
            violations.append({"reason": f"duplicate in {name}", "value": values})
            upd[name] = list(dict.fromkeys(values))
    return (intent.model_copy(update=upd) if upd else intent), violations


def build_where(
    year_min: int | None,
    year_max: int | None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    any_of: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Chroma ``where``: year bounds and genre flags (``genre_x`` is set only when True);
    ``any_of``: at least one of these genres (a named title's genres)."""
    clauses: list[dict[str, Any]] = []
    if year_min is not None:
        clauses.append({"year": {"$gte": year_min}})
    if year_max is not None:
        clauses.append({"year": {"$lte": year_max}})
    clauses += [{genre_key(g): True} for g in include]
    clauses += [{genre_key(g): {"$ne": True}} for g in exclude]
    any_of = [g for g in any_of if g not in exclude]
    if len(any_of) == 1:
        clauses.append({genre_key(any_of[0]): True})
    elif any_of:
        clauses.append({"$or": [{genre_key(g): True} for g in any_of]})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def matches_where(meta: dict[str, Any], where: dict[str, Any] | None) -> bool:
    """Whether item metadata satisfies a ``build_where`` filter (for checks and tests)."""
    if where is None:
        return True
    for clause in where.get("$and", [where]):
        if "$or" in clause:
            if not any(matches_where(meta, c) for c in clause["$or"]):
                return False
            continue
        ((key, cond),) = clause.items()
        val = meta.get(key)
        if not isinstance(cond, dict):
            ok = val == cond
        elif "$gte" in cond:
            ok = val is not None and val >= cond["$gte"]
        elif "$lte" in cond:
            ok = val is not None and val <= cond["$lte"]
        else:
            ok = val != cond["$ne"]
        if not ok:
            return False
    return True


class Pick(BaseModel):
    id: str
    title: str
    rationale: str | None = None
    year: int | None = None
    genres: str = ""


class Turn(BaseModel):
    n: int
    message: str
    intent: Intent | None = None
    where: dict[str, Any] | None = None
    picks: list[Pick] = Field(default_factory=list)
    violations: list[dict[str, Any]] = Field(default_factory=list)
    intent_prompt_sha256: str = ""
    intent_template_sha256: str = ""
    rank_prompt_sha256: str = ""
    model_id: str = ""
    # Wishes dropped because nothing matched them all (the used filter is ``where``).
    relaxed: list[str] = Field(default_factory=list)
    # Who read the message: "normaliser", "llm", "normaliser+llm" (hybrid) or "query".
    read_by: str = ""
    # The normaliser's reading (its wishes, the catalog ids of named titles, the words it
    # could not account for), when it ran.
    reading: dict[str, Any] | None = None
    seconds: float = 0.0
    error: str | None = None
    # Set when the LLM ran out of the turn's budget ("llm_timeout") or failed
    # ("llm_unavailable") and the turn answered without it; ``notes`` say what was skipped.
    fallback: str | None = None
    notes: list[str] = Field(default_factory=list)


class SessionState(BaseModel):
    """Everything a session needs to resume: active wishes, seeds, rejections, what was shown."""

    id: str
    user_id: str | None = None
    created: float = 0.0
    query: str = ""
    year_min: int | None = None
    year_max: int | None = None
    genres_include: list[str] = Field(default_factory=list)
    genres_exclude: list[str] = Field(default_factory=list)
    # Titles the user named ("like Alien"): retrieval seeds, never picks; their genres are
    # an any-of filter (``genres_any``).
    references: list[str] = Field(default_factory=list)
    genres_any: list[str] = Field(default_factory=list)
    seeds: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)
    shown: list[str] = Field(default_factory=list)
    last_picks: list[Pick] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)

    def where(self) -> dict[str, Any] | None:
        return build_where(
            self.year_min, self.year_max, self.genres_include, self.genres_exclude, self.genres_any
        )

    def active_text(self) -> str:
        parts = []
        if self.query:
            parts.append(f"query: {self.query}")
        if self.year_min is not None:
            parts.append(f"year from {self.year_min}")
        if self.year_max is not None:
            parts.append(f"year up to {self.year_max}")
        if self.genres_include:
            parts.append("genres: " + ", ".join(self.genres_include))
        if self.genres_exclude:
            parts.append("not: " + ", ".join(self.genres_exclude))
        return "; ".join(parts)

    def apply(
        self,
        intent: Intent,
        references: Sequence[str] = (),
        reference_genres: Sequence[str] = (),
    ) -> None:
        """Merge one turn's intent (and the titles it names) into the active search."""
        last = [p.id for p in self.last_picks]
        if intent.reset:
            self.query, self.year_min, self.year_max = "", None, None
            self.genres_include, self.genres_exclude, self.seeds = [], [], []
            self.references, self.genres_any = [], []
        if intent.query.strip():
            self.query = intent.query.strip()
        if intent.year_min is not None:
            self.year_min = intent.year_min
            if self.year_max is not None and self.year_max < intent.year_min:
                self.year_max = None  # "newer ones" moves past the old bound
        if intent.year_max is not None:
            self.year_max = intent.year_max
            if self.year_min is not None and self.year_min > intent.year_max:
                self.year_min = None
        if references:
            # A newly named title replaces the earlier ones ("now something like Heat").
            self.seeds = [s for s in self.seeds if s not in self.references]
            self.references = list(dict.fromkeys(references))
            self.genres_any = list(dict.fromkeys(reference_genres))
            self.seeds += [r for r in self.references if r not in self.seeds]
        if intent.genres_include:
            self.genres_include = list(intent.genres_include)
            self.genres_exclude = [g for g in self.genres_exclude if g not in intent.genres_include]
        for g in intent.genres_exclude:
            if g not in self.genres_exclude:
                self.genres_exclude.append(g)
            if g in self.genres_include:
                self.genres_include.remove(g)
        for pos in intent.more_like:
            iid = last[pos - 1]
            if iid not in self.seeds:
                self.seeds.append(iid)
        for pos in intent.exclude_picks:
            iid = last[pos - 1]
            if iid not in self.rejected:
                self.rejected.append(iid)
            if iid in self.seeds:
                self.seeds.remove(iid)


class SessionStore:
    """Chat sessions: one row per session holding its whole state (small; rewritten per
    turn), in SQLite (a path) or any SessionBackend (``from_config``: PostgreSQL when
    ``store.database_url`` is set)."""

    def __init__(self, rows: str | Path | SessionBackend) -> None:
        self.rows: SessionBackend = SQLiteSessions(rows) if isinstance(rows, (str, Path)) else rows

    @classmethod
    def from_config(cls, config: Config) -> SessionStore:
        from genre_agent.storage.backends import open_sessions

        return cls(open_sessions(config))

    def save(self, state: SessionState) -> None:
        self.rows.put(state.id, state.user_id, time.time(), state.model_dump_json())

    def load(self, session_id: str) -> SessionState:
        raw = self.rows.get(session_id)
        if raw is None:
            raise GenreError(f"no chat session {session_id!r}")
        return SessionState.model_validate_json(raw)

    def delete_user(self, user_id: str) -> int:
        """Delete every session of ``user_id``; returns how many."""
        return self.rows.delete_user(user_id)

    def exists(self, session_id: str) -> bool:
        return self.rows.exists(session_id)

    def delete(self, session_id: str) -> bool:
        return self.rows.delete(session_id)

    def page(
        self, user_id: str | None, offset: int, limit: int
    ) -> list[tuple[str, str | None, float]]:
        """(id, user_id, updated) of ``limit`` sessions from ``offset``, least recently
        updated first; only ``user_id``'s when given."""
        return self.rows.page(user_id, offset, limit)

    def list(self) -> list[tuple[str, str | None, float]]:
        return self.rows.list()

    def close(self) -> None:
        self.rows.close()


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
        turn.intent = intent
        turn.violations += violations
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
        st.apply(intent, references, reference_genres)
        turn.where = st.where()
        exclude = set(st.rejected) | set(st.references)
        if not intent.repeat_ok:
            exclude |= set(st.shown)
        seeds = [i for i in st.seeds if i not in st.rejected]
        if not seeds and not st.query and not st.user_id and not self.profile and not turn.where:
            turn.error = "tell me what you would like (a title, a mood, a genre)"
        else:
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
        turn.seconds = time.perf_counter() - t0
        st.turns.append(turn)
        self.store.save(st)
        return turn

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
