"""LLM engines behind one Protocol (base.py), one explicit registry (registry.py)."""

from genre_agent.llm.base import LLM, Generation, GenRequest, Message
from genre_agent.llm.fake import FakeLLM
from genre_agent.llm.registry import ENGINES, clear_engines, get_engine

__all__ = [
    "ENGINES",
    "LLM",
    "FakeLLM",
    "GenRequest",
    "Generation",
    "Message",
    "clear_engines",
    "get_engine",
]
