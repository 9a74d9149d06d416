"""Scoring mode on a real (tiny) model: SmolLM2-135M through the transformers engine."""

from __future__ import annotations

import math

import pytest

from genre_agent.catalog.items import Item
from genre_agent.config import LLMConfig, RankingConfig
from genre_agent.llm.base import Message, ScoreRequest
from genre_agent.llm.registry import get_engine
from genre_agent.ranking.base import RankRequest
from genre_agent.ranking.scoring import ScoringRanker
from genre_agent.types import Candidate

pytestmark = pytest.mark.real

TITLES = [
    ("Toy Story (1995)", "Genres: Adventure, Animation, Children, Comedy, Fantasy."),
    ("Heat (1995)", "Genres: Action, Crime, Thriller."),
    ("Alien (1979)", "Genres: Horror, Sci-Fi."),
    ("Notting Hill (1999)", "Genres: Comedy, Romance."),
    ("The Matrix (1999)", "Genres: Action, Sci-Fi, Thriller."),
    ("Fargo (1996)", "Genres: Comedy, Crime, Drama, Thriller."),
]


@pytest.fixture(scope="module")
def llm():
    return get_engine(LLMConfig(engine="transformers", model="smollm2-135m", dtype="float32"))


def test_label_scores_are_finite_distinct_and_normalised(llm):
    labels = ("A", "B", "C", "D", "E", "F")
    body = "\n".join(f"[{lab}] {t}: {d}" for lab, (t, d) in zip(labels, TITLES, strict=True))
    req = ScoreRequest(
        messages=(
            Message("system", "Answer with the label of the best movie only."),
            Message("user", f"I liked Blade Runner.\n{body}\nAnswer with one label."),
        ),
        labels=labels,
    )
    [res] = llm.score_labels([req])
    vals = [res.logprobs[lab] for lab in labels]
    assert all(math.isfinite(v) and v < 0 for v in vals)
    assert len({round(v, 6) for v in vals}) == len(vals)
    assert math.isclose(sum(math.exp(v) for v in vals), 1.0, rel_tol=1e-4)
    assert res.prompt_tokens > 50


def test_scoring_ranker_end_to_end_with_rationale(llm):
    cands = [
        Candidate(item=Item(id=f"m{i}", title=t, text=d), score=0.0, source="t")
        for i, (t, d) in enumerate(TITLES)
    ]
    history = [Item(id="h1", title="Blade Runner (1982)", text="Genres: Sci-Fi, Thriller.")]
    cfg = RankingConfig(mode="scoring", k=4, permutations=2, rationale_top_r=1)
    [(items, trace)] = ScoringRanker(llm, cfg).rank_many([RankRequest(cands, history=history, k=4)])
    assert len(items) == 4 and len({i.item.id for i in items}) == 4
    assert all(i.score is not None and math.isfinite(i.score) for i in items)
    assert len({i.llm_score for i in items}) == 4
    assert items[0].rationale and all(i.rationale is None for i in items[1:])
    assert trace.stability is not None and -1.0 <= trace.stability <= 1.0
    assert trace.llm_calls == 3
