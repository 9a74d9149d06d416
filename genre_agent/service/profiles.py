"""LLM-written user interest profiles: constrained JSON, re-validated, stored in SQLite.

A profile is built from a user's history by one constrained generation whose evidence ids are
an enum of that user's real history ids. The answer is re-validated with pydantic; every
problem (bad JSON, unknown or duplicate evidence ids) is counted in ``violations`` and never
silently patched: a profile whose JSON cannot be read raises ProfileError.

Profiles are cached per (user, template sha256, model id) together with a hash of the history
they were built from, so they are reused until the history, the prompt or the model changes.
Forgetting an item removes it from the stored evidence *and* from every history used to
rebuild the profile (its influence is gone: the next ``get`` rebuilds without it).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from genre_agent.catalog.items import Item
from genre_agent.config import Config, ProfileConfig
from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM, GenRequest, Message
from genre_agent.prompting import render
from genre_agent.storage.base import ProfileBackend
from genre_agent.storage.profiles import ProfileRecord, ProfileStore, Topic, UserProfile

if TYPE_CHECKING:
    pass

_TOPIC_CHARS = r"[A-Za-z0-9 ,'&/\-]"


# (user id, liked items, disliked items): one user's input to Profiles.build_many.
ProfileInput = tuple[str, Sequence[Item], Sequence[Item]]


class ProfileError(GenreError):
    """A profile could not be built or edited."""


def _quote_ids(ids: Sequence[str]) -> str:
    # Ids are [A-Za-z0-9_.:-]; only '.' is special outside a character class.
    return '"(' + "|".join(i.replace(".", r"\.") for i in ids) + ')"'


def profile_regex(ids: Sequence[str], cfg: ProfileConfig) -> str:
    """Regex of a profile answer; evidence ids are an enum of the user's history ids."""
    idre = _quote_ids(ids)
    evidence = r"\[" + idre + "(, " + idre + "){0," + str(cfg.max_evidence - 1) + r"}\]"
    topic = r'\{"topic": "' + _TOPIC_CHARS + r'{2,40}", "evidence": ' + evidence + r"\}"
    topics = r"\[(" + topic + "(, " + topic + "){0," + str(cfg.max_topics - 1) + r"})?\]"
    liked = r"\[" + topic + "(, " + topic + "){0," + str(cfg.max_topics - 1) + r"}\]"
    summary = r'"[^"\\\n\r\t]{10,' + str(cfg.summary_chars) + '}"'
    return r'\{"liked": ' + liked + r', "disliked": ' + topics + r', "summary": ' + summary + r"\}"


def validate_profile(text: str, allowed: set[str]) -> tuple[UserProfile, list[dict[str, Any]]]:
    """Parse and re-validate; drop unknown/duplicate evidence ids but report each one."""
    violations: list[dict[str, Any]] = []
    try:
        raw = json.loads(text)
        prof = UserProfile.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        raise ProfileError(f"profile answer failed schema: {str(exc)[:300]}") from exc
    fixed: dict[str, list[Topic]] = {"liked": [], "disliked": []}
    for side in ("liked", "disliked"):
        for t in getattr(prof, side):
            seen: list[str] = []
            for i in t.evidence:
                if i not in allowed:
                    violations.append({"reason": "unknown evidence id", "id": i, "topic": t.topic})
                elif i in seen:
                    violations.append({"reason": "duplicate evidence id", "id": i})
                else:
                    seen.append(i)
            fixed[side].append(Topic(topic=t.topic, evidence=seen))
    return UserProfile(liked=fixed["liked"], disliked=fixed["disliked"], summary=prof.summary), (
        violations
    )


def history_sha256(liked: Sequence[Item], disliked: Sequence[Item]) -> str:
    blob = json.dumps([[i.id for i in liked], [i.id for i in disliked]])
    return hashlib.sha256(blob.encode()).hexdigest()


def _without(profile: UserProfile, item_id: str) -> UserProfile:
    def strip(topics: list[Topic]) -> list[Topic]:
        out = []
        for t in topics:
            ev = [i for i in t.evidence if i != item_id]
            if ev or not t.evidence:
                out.append(Topic(topic=t.topic, evidence=ev))
        return out

    return UserProfile(
        liked=strip(profile.liked), disliked=strip(profile.disliked), summary=profile.summary
    )


class Profiles:
    """Build, reuse, view, edit and forget user profiles."""

    def __init__(self, llm: LLM | None, store: ProfileBackend, cfg: ProfileConfig | None = None):
        self._llm = llm
        self.store = store
        self.cfg = cfg or ProfileConfig()

    @classmethod
    def from_config(cls, cfg: ProfileConfig | Config, llm: LLM | None = None) -> Profiles:
        """From the whole Config: the backend ``store.database_url`` names (PostgreSQL or
        the SQLite file); from a ProfileConfig alone: its SQLite file."""
        if isinstance(cfg, Config):
            from genre_agent.storage.backends import open_profiles

            return cls(llm, open_profiles(cfg), cfg.profile)
        return cls(llm, ProfileStore(cfg.path), cfg)

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            raise ProfileError("building a profile needs an LLM")
        return self._llm

    def _clean(
        self, user_id: str, liked: Sequence[Item], disliked: Sequence[Item]
    ) -> tuple[list[Item], list[Item]]:
        gone = self.store.forgotten(user_id)
        n = self.cfg.max_history
        keep_l = [i for i in liked if i.id not in gone][-n:]
        keep_d = [i for i in disliked if i.id not in gone][-n:]
        return keep_l, keep_d

    def request(self, liked: Sequence[Item], disliked: Sequence[Item]) -> GenRequest:
        def view(items: Sequence[Item]) -> list[dict[str, str]]:
            return [
                {"id": i.id, "title": i.title, "genres": str(i.metadata.get("genres", ""))}
                for i in items
            ]

        prompt = render(
            self.cfg.template,
            liked=view(liked),
            disliked=view(disliked),
            max_topics=self.cfg.max_topics,
            summary_chars=self.cfg.summary_chars,
        )
        ids = [i.id for i in [*liked, *disliked]]
        return GenRequest(
            messages=(Message("system", prompt.system), Message("user", prompt.user)),
            regex=profile_regex(ids, self.cfg),
            max_tokens=60 * self.cfg.max_topics * 2 + self.cfg.summary_chars // 2 + 40,
            hint={"task": "profile", "history_ids": ids, "template_sha256": prompt.template_sha256},
        )

    def build(
        self,
        user_id: str,
        liked: Sequence[Item],
        disliked: Sequence[Item] = (),
        force: bool = False,
    ) -> ProfileRecord:
        """The user's profile; reused when history, template and model are unchanged."""
        out = self.build_many([(user_id, liked, disliked)], force=force)[0]
        if isinstance(out, ProfileError):
            raise out
        return out

    def build_many(
        self, users: Sequence[ProfileInput], force: bool = False
    ) -> list[ProfileRecord | ProfileError]:
        """``build`` for many (user id, liked, disliked) at once: the profiles that need the
        LLM are generated in one batched call. Each slot holds the user's record, or the
        ProfileError that stopped it (no history, unreadable answer); other users are
        unaffected."""
        from genre_agent.prompting import template_sha256

        tsha = template_sha256(self.cfg.template)
        out: list[ProfileRecord | ProfileError | None] = []
        todo: list[tuple[int, str, list[Item], list[Item], str]] = []
        for user_id, liked_in, disliked_in in users:
            liked, disliked = self._clean(user_id, liked_in, disliked_in)
            if not liked and not disliked:
                msg = f"user {user_id!r} has no history to build a profile from"
                out.append(ProfileError(msg))
                continue
            h = history_sha256(liked, disliked)
            old = self.store.get(user_id)
            if old and not force:
                if old.edited or (
                    old.history_sha256 == h
                    and old.template_sha256 == tsha
                    and old.model_id == self.llm.model_id
                ):
                    out.append(old)
                    continue
            todo.append((len(out), user_id, liked, disliked, h))
            out.append(None)
        reqs = [self.request(lk, dk) for _, _, lk, dk, _ in todo]
        gens = self.llm.generate(reqs) if reqs else []
        for (slot, user_id, liked, disliked, h), gen in zip(todo, gens, strict=True):
            allowed = {i.id for i in [*liked, *disliked]}
            try:
                profile, violations = validate_profile(gen.text, allowed)
            except ProfileError as exc:
                out[slot] = exc
                continue
            rec = ProfileRecord(
                user_id=user_id,
                profile=profile,
                template_sha256=tsha,
                model_id=self.llm.model_id,
                history_sha256=h,
                violations=violations,
                created=time.time(),
                raw_output=gen.text,
            )
            self.store.put(rec)
            out[slot] = rec
        return [r for r in out if r is not None]

    def get(self, user_id: str) -> ProfileRecord | None:
        return self.store.get(user_id)

    def edit(self, user_id: str, profile: UserProfile | dict[str, Any] | str) -> ProfileRecord:
        """Replace the profile by hand (kept until ``forget_profile`` or a forced rebuild)."""
        try:
            if isinstance(profile, str):
                profile = UserProfile.model_validate_json(profile)
            elif isinstance(profile, dict):
                profile = UserProfile.model_validate(profile)
        except ValidationError as exc:
            raise ProfileError(f"invalid profile: {exc}") from None
        old = self.store.get(user_id)
        rec = ProfileRecord(
            user_id=user_id,
            profile=profile,
            template_sha256=old.template_sha256 if old else "",
            model_id=old.model_id if old else "",
            history_sha256=old.history_sha256 if old else "",
            edited=True,
            created=time.time(),
        )
        self.store.put(rec)
        return rec

    def forget_item(self, user_id: str, item_id: str) -> ProfileRecord | None:
        """Remove an item from the evidence now and from every future rebuild's history."""
        self.store.forget(user_id, item_id)
        old = self.store.get(user_id)
        if old is None:
            return None
        rec = old.model_copy(
            update={"profile": _without(old.profile, item_id), "history_sha256": "forgotten"}
        )
        # An edited profile stays the user's; an LLM-built one is rebuilt on the next build()
        # because its history hash no longer matches.
        self.store.put(rec)
        return rec

    def forget_profile(self, user_id: str) -> bool:
        return self.store.delete(user_id)

    def forgotten(self, user_id: str) -> set[str]:
        return self.store.forgotten(user_id)
