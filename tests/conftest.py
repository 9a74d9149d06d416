"""Shared fixtures: the project's own small catalog, fake and real recommenders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
CATALOG = FIXTURES / "catalog.jsonl"
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# Sources that need no interactions (catalog-only tests).
CONTENT_SOURCES = {"embedding": 1.0}


@pytest.fixture()
def catalog_path() -> Path:
    return CATALOG


@pytest.fixture()
def fake_rec(tmp_path: Path):
    """A Recommender with an in-memory Chroma, the hashing embedder and a scripted LLM."""
    from genre_agent import Recommender
    from genre_agent.embedders.fake import FakeEmbedder
    from genre_agent.llm import FakeLLM

    rec = Recommender.from_config(
        {
            "store": {"kind": "memory", "collection": f"t{tmp_path.name[-20:]}"},
            "llm": {"engine": "fake"},
            # The fixture catalog has no interactions: content sources only.
            "retrieval": {"sources": CONTENT_SOURCES},
        },
        llm=FakeLLM("first"),
        embedder=FakeEmbedder(),
    )
    rec.index(CATALOG)
    yield rec
    rec.close()


@pytest.fixture(scope="session", autouse=True)
def _close_engines():
    yield
    from genre_agent.llm import clear_engines

    clear_engines()
