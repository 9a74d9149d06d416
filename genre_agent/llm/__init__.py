"""LLM engines behind one Protocol."""

from genre_agent.llm.base import (
    ENGINES,
    LLM,
    Generation,
    GenRequest,
    Message,
    clear_engines,
    get_engine,
    register_engine,
)
from genre_agent.llm.fake import FakeLLM

__all__ = [
    "ENGINES",
    "LLM",
    "FakeLLM",
    "GenRequest",
    "Generation",
    "Message",
    "clear_engines",
    "get_engine",
    "register_engine",
]
