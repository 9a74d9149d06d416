"""The retriever seam: a small Protocol, the query type, and a registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from genre_agent.catalog.items import Item
from genre_agent.types import Candidate


@dataclass(frozen=True)
class RetrievalQuery:
    """What a retriever may use: history, free text, a profile, filters, exclusions."""

    history: tuple[Item, ...] = ()
    text: str | None = None
    profile: str | None = None
    where: dict[str, Any] | None = None
    exclude_ids: frozenset[str] = field(default_factory=frozenset)


@runtime_checkable
class Retriever(Protocol):
    name: str

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]: ...


RETRIEVERS: dict[str, Callable[..., Retriever]] = {}


def register_retriever(kind: str) -> Callable[[Callable[..., Retriever]], Callable[..., Retriever]]:
    def deco(factory: Callable[..., Retriever]) -> Callable[..., Retriever]:
        RETRIEVERS[kind] = factory
        return factory

    return deco
