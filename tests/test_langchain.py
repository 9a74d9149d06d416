"""LangChain interop: retriever in a chain, tool call, session history as messages."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda
from test_chat import make_rec

from genre_agent.service.chat import ChatSession, SessionStore, scripted_intents
from genre_agent.service.langchain_interop import (
    GenreRetriever,
    SessionChatHistory,
    make_recommend_tool,
    session_messages,
)


def test_retriever_in_chain(tmp_path) -> None:
    rec = make_rec(tmp_path, scripted_intents(), name="lcret")
    retriever = GenreRetriever(recommender=rec, k=3, filters={"genre_comedy": True})
    chain = RunnableLambda(lambda x: x["want"]) | retriever
    docs = chain.invoke({"want": "funny space film"})
    assert len(docs) == 3
    assert all("Comedy" in d.metadata["genres"] for d in docs)
    assert [d.metadata["rank"] for d in docs] == [1, 2, 3]
    assert all(d.metadata["rationale"] for d in docs)
    # A (fake) chat model writes the query; the retriever answers it.
    llm_chain = FakeListChatModel(responses=["drama"]) | StrOutputParser() | retriever
    docs2 = llm_chain.invoke("I want something serious")
    assert docs2 and rec.llm.requests[-1].messages[1].content.count("drama") >= 1


def test_tool_call(tmp_path) -> None:
    rec = make_rec(tmp_path, scripted_intents(), name="lctool")
    tool = make_recommend_tool(rec)
    assert tool.name == "recommend_items" and "query" in tool.args
    out = tool.invoke({"query": "space horror", "k": 2, "year_min": 2000, "genres": ["Horror"]})
    lines = out.splitlines()
    assert len(lines) == 2 and all("Horror" in line for line in lines)
    years = [int(line.split(" - ")[0].rsplit("(", 1)[1][:4]) for line in lines]
    assert all(y >= 2000 for y in years)
    # Same call as a tool call message from an agent.
    msg = tool.invoke(
        {"type": "tool_call", "id": "c1", "name": tool.name, "args": {"query": "comedy", "k": 1}}
    )
    assert msg.tool_call_id == "c1" and msg.content.startswith("1. [")


def test_session_history_as_messages(tmp_path) -> None:
    rec = make_rec(tmp_path, scripted_intents(), name="lchist")
    s = ChatSession.start(rec, SessionStore(":memory:"))
    s.send("sci-fi")
    hist = SessionChatHistory(s)
    hist.add_messages([HumanMessage(content="comedy"), AIMessage(content="ignored")])
    msgs = session_messages(s)
    assert [type(m).__name__ for m in msgs] == ["HumanMessage", "AIMessage"] * 2
    assert msgs[2].content == "comedy"
    assert msgs[1].additional_kwargs["picks"] == [p.id for p in s.turns[0].picks]
    assert hist.messages == msgs
