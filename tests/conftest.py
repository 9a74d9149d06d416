"""Shared fixtures: the project's own small catalog, fake and real recommenders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import UserDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# Engines that load a real model in this process. The openai engine is not here: unmarked
# tests point it at fake HTTP servers (tests/test_openai_faults.py).
REAL_ENGINES = ("vllm", "transformers")


class RealEngineRefused(RuntimeError):
    """An unmarked test tried to build a real LLM engine."""


class _NoRealCache(UserDict[Any, Any]):
    """The engine cache as an unmarked test sees it: real engines built by an earlier
    real-marked test are not there (so get_engine reaches the refusing constructor)."""

    def __contains__(self, key: object) -> bool:
        if isinstance(key, tuple) and key and key[0] in REAL_ENGINES:
            return False
        return key in self.data


@pytest.fixture(autouse=True)
def _no_real_engine_unless_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A test without the ``real`` or ``server`` marker cannot build a vLLM or transformers
    engine: the fast suite must never load a model by accident (one such test once took
    58% of its time). Subprocesses (``genre ...`` run by a test) are not covered."""
    if request.node.get_closest_marker("real") or request.node.get_closest_marker("server"):
        yield
        return
    from genre_agent.llm import engines, registry

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RealEngineRefused(
            f"{request.node.nodeid} builds a real LLM engine ({type(self).__name__}) but is not "
            "marked real or server: mark it @pytest.mark.real, or use llm.engine = 'fake'"
        )

    monkeypatch.setattr(engines.VLLMEngine, "__init__", refuse)
    monkeypatch.setattr(engines.TransformersEngine, "__init__", refuse)
    guarded = _NoRealCache()
    guarded.data = registry._CACHE  # the same entries: clear_engines still closes them all
    monkeypatch.setattr(registry, "_CACHE", guarded)
    yield


# A shell starts a background job (`cmd &` without job control, as a CI script may) with
# SIGINT ignored, and every child inherits that: the Ctrl-C tests' children then never see
# their signal (tests/test_openai_faults.py timed out at 60 s only in such runs; SigIgn
# 0x...1006 showed SIGINT ignored in pytest itself). The tests stand for a terminal where
# Ctrl-C reaches the program: restore Python's own handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _sigint_state() -> tuple[bool, bool]:
    """(ignored, blocked) for SIGINT in this process, as the kernel sees it (a library can
    change either in C, where ``signal.getsignal`` does not look)."""
    bit = 1 << (signal.SIGINT - 1)
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return bool(int(fields["SigIgn"], 16) & bit), bool(int(fields["SigBlk"], 16) & bit)


@pytest.fixture(autouse=True)
def _sigint_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test must not leave SIGINT ignored or blocked: every later subprocess would
    inherit it, and Ctrl-C tests (tests/test_openai_faults.py) then fail far from the
    cause."""
    if not Path("/proc/self/status").exists():
        yield
        return
    before = _sigint_state()
    yield
    after = _sigint_state()
    assert after == before, (
        f"{request.node.nodeid} left SIGINT (ignored, blocked) = {after}, was {before}"
    )


@pytest.fixture(scope="session")
def recommend_cmd(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``genre recommend`` over the fixture catalog, indexed once for every test that
    only reads it (the index subprocess is the slow part)."""
    return _index_for_cli(tmp_path_factory.mktemp("openai-cli"), CATALOG)


def _index_for_cli(tmp: Path, catalog: Path) -> list[str]:
    sets = [
        "--set",
        "embedder.kind=fake",
        "--set",
        f"store.path={tmp / 'chroma'}",
        "--set",
        f"store.interactions_path={tmp / 'i.sqlite'}",
        "--set",
        f"profile.path={tmp / 'p.sqlite'}",
        # The fixture catalog has no interactions: the content sources.
        "--set",
        'retrieval.sources={"embedding": 1.0}',
    ]
    exe = Path(sys.executable).parent / "genre"
    proc = subprocess.run(
        [str(exe), "index", str(catalog), "--set", "llm.engine=fake", *sets],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return [str(exe), "recommend", "--history", "m1", "-k", "2", *sets]
