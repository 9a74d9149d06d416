"""LangChain interop: recommendations as a BaseRetriever, an agent tool, and chat history.

Only langchain-core is needed. The service stays LangChain-free; this adapter imports it.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from genre_agent.service.chat import ChatSession, Turn, build_where
from genre_agent.service.recommender import Recommender
from genre_agent.types import Recommendation


def to_documents(rec: Recommendation) -> list[Document]:
    """One Document per recommended item: its text, plus rank/score/rationale metadata."""
    docs = []
    for it in rec.items:
        meta: dict[str, Any] = {
            "id": it.item.id,
            "title": it.item.title,
            "rank": it.rank,
            "score": it.score,
            "rationale": it.rationale,
        }
        meta.update({k: v for k, v in it.item.metadata.items() if k in {"year", "genres"}})
        docs.append(Document(page_content=it.item.document(), metadata=meta, id=it.item.id))
    return docs


class GenreRetriever(BaseRetriever):
    """``invoke(query)`` -> recommended items as Documents (query text + optional user)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    recommender: Recommender
    k: int = 5
    user_id: str | None = None
    history: list[str] | None = None
    filters: dict[str, Any] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        rec = self.recommender.recommend(
            user_id=self.user_id,
            history=self.history if self.history is not None else (None if self.user_id else []),
            query=query or None,
            k=self.k,
            filters=self.filters,
        )
        return to_documents(rec)


class RecommendArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="What the user wants, in a few words")
    k: int = Field(5, ge=1, le=20, description="How many items")
    year_min: int | None = Field(None, description="Earliest release year")
    year_max: int | None = Field(None, description="Latest release year")
    genres: list[str] = Field(default_factory=list, description="Genres that must all match")
    exclude_genres: list[str] = Field(default_factory=list, description="Genres to avoid")


def make_recommend_tool(recommender: Recommender, name: str = "recommend_items") -> BaseTool:
    """A tool an agent can call; returns ranked ids, titles and rationales as text."""

    def run(
        query: str,
        k: int = 5,
        year_min: int | None = None,
        year_max: int | None = None,
        genres: list[str] | None = None,
        exclude_genres: list[str] | None = None,
    ) -> str:
        where = build_where(year_min, year_max, genres or [], exclude_genres or [])
        rec = recommender.recommend(query=query, k=k, filters=where, history=[])
        lines = [
            f"{it.rank}. [{it.item.id}] {it.item.title}"
            + (f" - {it.rationale}" if it.rationale else "")
            for it in rec.items
        ]
        return "\n".join(lines) or "no items match"

    return StructuredTool.from_function(
        func=run,
        name=name,
        description="Recommend catalog items (movies) for a request, with optional filters.",
        args_schema=RecommendArgs,
    )


def turn_reply_text(turn: Turn) -> str:
    if turn.error:
        return f"(no picks: {turn.error})"
    return "\n".join(
        f"{n}. {p.title}" + (f" - {p.rationale}" if p.rationale else "")
        for n, p in enumerate(turn.picks, start=1)
    )


def session_messages(session: ChatSession) -> list[BaseMessage]:
    """The session as LangChain messages: Human per user turn, AI per reply."""
    out: list[BaseMessage] = []
    for t in session.turns:
        out.append(HumanMessage(content=t.message))
        out.append(
            AIMessage(
                content=turn_reply_text(t),
                additional_kwargs={"picks": [p.id for p in t.picks]},
            )
        )
    return out


class SessionChatHistory(BaseChatMessageHistory):
    """A read-through BaseChatMessageHistory over a ChatSession.

    ``add_messages`` with a HumanMessage runs a chat turn; AI messages are ignored (the
    session writes its own replies).
    """

    def __init__(self, session: ChatSession) -> None:
        self.session = session

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return session_messages(self.session)

    def add_messages(self, messages: list[BaseMessage]) -> None:  # type: ignore[override]
        for m in messages:
            if isinstance(m, HumanMessage):
                self.session.send(str(m.content))

    def clear(self) -> None:
        raise NotImplementedError("chat sessions are append-only; start a new session")
