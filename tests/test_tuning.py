"""Tuning examples: no held-out target leaks, uniform positive position, serve-identical prompts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from genre_agent.config import RankingConfig, TuneConfig
from genre_eval.tuning import build_examples, score_request

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def write_fixture(root: Path, users: int = 12, items: int = 60, per_user: int = 14) -> Path:
    """A tiny jsonl dataset: items.jsonl + interactions.jsonl with distinct timestamps."""
    import random

    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    with (root / "items.jsonl").open("w") as fh:
        for i in range(items):
            g = GENRES[i % len(GENRES)]
            fh.write(
                json.dumps(
                    {
                        "id": f"m{i}",
                        "title": f"Movie {i} ({1980 + i % 40})",
                        "text": f"Genres: {g}.",
                        "metadata": {"genres": g},
                    }
                )
                + "\n"
            )
    with (root / "interactions.jsonl").open("w") as fh:
        for u in range(users):
            # Each user mostly watches one genre, so there is something to learn.
            pool = [i for i in range(items) if i % len(GENRES) == u % len(GENRES)]
            pool += rng.sample(range(items), 4)
            picks = rng.sample(sorted(set(pool)), min(per_user, len(set(pool))))
            for t, i in enumerate(picks):
                fh.write(
                    json.dumps(
                        {"user_id": f"u{u}", "item_id": f"m{i}", "timestamp": 1000 + t, "rating": 4}
                    )
                    + "\n"
                )
    return root


@pytest.fixture()
def tiny_ds(tmp_path: Path):
    from genre_eval.datasets import DatasetConfig, load_dataset

    root = write_fixture(tmp_path / "data")
    return load_dataset(DatasetConfig(kind="jsonl", path=root))


def test_examples_never_use_validation_or_test_targets(tiny_ds):
    cfg = TuneConfig(n_examples=300, n_candidates=8, min_history=3, recent=20)
    examples = build_examples(tiny_ds, cfg)
    assert len(examples) == 300
    for ex in examples:
        rows = tiny_ds.by_user[ex.user_id]
        held_out = {rows[-1].item_id, rows[-2].item_id}
        assert ex.positive not in held_out
        assert not held_out & set(ex.history)
        # History is a strict time prefix of the training part, positive is the next item.
        ids = [r.item_id for r in rows]
        t = len(ex.history)
        assert list(ex.history) == ids[:t] and ids[t] == ex.positive
        assert t <= len(rows) - 3
        # Negatives are unseen by the user, distinct, and the positive appears once.
        negs = [c for i, c in enumerate(ex.candidates) if i != ex.position]
        assert not set(negs) & set(ids)
        assert len(set(ex.candidates)) == len(ex.candidates) == 8


def test_examples_leak_detector_can_fail(tiny_ds):
    # If the split used every interaction, held-out targets would show up as positives:
    # the check above must be able to see that.
    cfg = TuneConfig(n_examples=300, n_candidates=8, min_history=3, recent=20)
    positives = {(e.user_id, e.positive) for e in build_examples(tiny_ds, cfg)}
    tests = {(u, rows[-1].item_id) for u, rows in tiny_ds.by_user.items()}
    assert not positives & tests
    assert {(u, rows[-3].item_id) for u, rows in tiny_ds.by_user.items()} & positives


def test_positive_position_is_uniform(tiny_ds):
    n = 8
    cfg = TuneConfig(n_examples=4000, n_candidates=n, min_history=3)
    counts = Counter(e.position for e in build_examples(tiny_ds, cfg))
    assert set(counts) == set(range(n))
    expected = 4000 / n
    chi2 = sum((counts[p] - expected) ** 2 / expected for p in range(n))
    assert chi2 < 24.3  # chi-square, 7 dof, p = 0.001


def test_examples_are_deterministic(tiny_ds):
    cfg = TuneConfig(n_examples=50, n_candidates=8, min_history=3)
    assert build_examples(tiny_ds, cfg) == build_examples(tiny_ds, cfg)
    assert build_examples(tiny_ds, cfg) != build_examples(
        tiny_ds, cfg.model_copy(update={"seed": 1})
    )


def test_training_prompt_is_the_serving_prompt(tiny_ds):
    """The tuned model sees exactly what ScoringRanker sends for the same candidates."""
    from genre_agent.llm.fake import FakeLLM
    from genre_agent.ranking.base import RankRequest
    from genre_agent.ranking.scoring import ScoringRanker
    from genre_agent.types import Candidate

    ex = build_examples(tiny_ds, TuneConfig(n_examples=1, n_candidates=8, min_history=3))[0]
    ranking = RankingConfig(mode="scoring")
    train_req = score_request(ex, tiny_ds, 20, ranking)
    seen = []

    def script(req):
        seen.append(req)
        return {lab: -float(i) for i, lab in enumerate(req.labels)}

    ranker = ScoringRanker(FakeLLM("first", score_script=script), ranking)
    ranker.rank_many(
        [
            RankRequest(
                candidates=[
                    Candidate(item=tiny_ds.items[c], score=0.0, source="t") for c in ex.candidates
                ],
                history=[tiny_ds.items[h] for h in ex.history][-20:],
                k=8,
            )
        ]
    )
    assert seen[0].messages == train_req.messages
    assert seen[0].labels == train_req.labels == tuple("ABCDEFGH")
    assert f"[{'ABCDEFGH'[ex.position]}] {tiny_ds.items[ex.positive].title}" in (
        train_req.messages[1].content
    )


def test_cli_tune_is_mounted_and_names_a_missing_data_key(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "genre_agent.cli", "tune", "--no-progress", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "tune.data" in proc.stderr + proc.stdout
    help_text = subprocess.run(
        [sys.executable, "-m", "genre_agent.cli", "tune", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "--data" in help_text and "--resume" in help_text
