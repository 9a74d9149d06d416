"""The sequential (SASRec-style) source: learning an order, save/load, resume, budget, filters."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from genre_agent.catalog.items import Item
from genre_agent.config import Config, SequentialConfig
from genre_agent.storage.interactions import Interaction, time_ordered
from retrievers.base import RetrievalQuery
from retrievers.sequential import SequentialRetriever
from retrievers.sequential_train import train, user_sequences, windows

N_ITEMS = 8
ITEMS = {f"i{n}": Item(id=f"i{n}", title=f"Item {n}") for n in range(N_ITEMS)}


def _rows() -> list[Interaction]:
    """User u watches i(u), i(u+1), i(u+2), i(u+3) (mod 8), in that order: every item is
    equally popular, so only the order tells what comes next."""
    rows = []
    for u in range(24):
        for step in range(4):
            item = f"i{(u + step) % N_ITEMS}"
            # Timestamps run against the id order, so sorting by id alone would be wrong.
            rows.append(Interaction(f"u{u}", item, timestamp=1000.0 + step * 10 - u))
    return rows


ROWS = _rows()
SMALL: dict[str, Any] = {
    "loss": "ce",
    "max_len": 4,
    "hidden": 16,
    "layers": 1,
    "heads": 1,
    "dropout": 0.0,
    "epochs": 40,
    "batch_size": 8,
    "lr": 0.01,
    "threads": 1,
    "checkpoint_every": 1,
    "time_budget_s": 600.0,
}


def _cfg(**extra: Any) -> SequentialConfig:
    return SequentialConfig(**{**SMALL, **extra})


def _q(*history: str, **extra: Any) -> RetrievalQuery:
    return RetrievalQuery(history=tuple(ITEMS[h] for h in history), **extra)


@pytest.fixture(scope="module")
def model() -> SequentialRetriever:
    return train(_cfg(), ITEMS, ROWS)


def _all_scores(m: SequentialRetriever, *history: str) -> list[float]:
    return m.score(_q(*history), sorted(ITEMS))


def test_sequences_follow_time_with_seeded_ties_and_drop_unknown_items() -> None:
    rows = [
        Interaction("a", "i2", 5.0),
        Interaction("a", "i1", 5.0),
        Interaction("a", "gone", 6.0),
        Interaction("a", "i0", 1.0),
        Interaction("b", "i3", 1.0),  # one known item: nothing to learn from
    ]
    ids = sorted(ITEMS)
    seqs = user_sequences(ids, rows)
    assert seqs in ([[1, 2, 3]], [[1, 3, 2]])  # i0, then i1 and i2 tied in time
    # The tie order does not depend on the order the rows arrived in...
    assert user_sequences(ids, rows[::-1]) == seqs
    # ...and is a seeded draw, not the id order: over seeds both orders occur.
    drawn = {tuple(user_sequences(ids, rows, seed)[0]) for seed in range(20)}
    assert drawn == {(1, 2, 3), (1, 3, 2)}
    # A long history gives every item as a target once; the default keeps the last stretch.
    assert windows(list(range(1, 11)), 4, every=False) == [[6, 7, 8, 9, 10]]
    assert windows(list(range(1, 11)), 4, every=True) == [
        [6, 7, 8, 9, 10],
        [2, 3, 4, 5, 6],
        [1, 2],
    ]


def test_learns_what_comes_next(model: SequentialRetriever) -> None:
    for start in (0, 3, 6):
        a, b, c = (f"i{(start + s) % N_ITEMS}" for s in range(3))
        top = model.search(_q(a, b), 3)
        assert top[0].item.id == c, (a, b, [x.item.id for x in top])
        assert top[0].source == "sequential"
    report = model.training_report
    assert report is not None
    assert report["epochs_done"] == 40
    assert report["stopped_by"] == "epochs"


def test_filters_exclusions_and_unknown_items(model: SequentialRetriever) -> None:
    got = model.search(_q("i0", "i1", exclude_ids=frozenset({"i2"})), N_ITEMS)
    ids = [c.item.id for c in got]
    assert "i2" not in ids and "i0" not in ids and "i1" not in ids
    assert len(ids) == N_ITEMS - 3
    allowed = frozenset({"i5", "i6"})
    assert {c.item.id for c in model.search(_q("i0", "i1", allowed_ids=allowed), 5)} == allowed
    # Scores come in the order asked; an id the model never saw scores 0.
    scores = model.score(_q("i0", "i1"), ["i2", "nope", "i5"])
    assert scores[1] == 0.0 and scores[0] > scores[2]
    # Search and score agree.
    full = dict(zip(sorted(ITEMS), _all_scores(model, "i0", "i1"), strict=True))
    for c in model.search(_q("i0", "i1"), 4):
        assert c.score == pytest.approx(full[c.item.id])


def test_an_empty_or_unknown_history_scores_zero(model: SequentialRetriever) -> None:
    assert model.score(RetrievalQuery(), ["i0", "i1"]) == [0.0, 0.0]
    assert model.search(RetrievalQuery(), 5) == []
    unknown = RetrievalQuery(history=(Item(id="new", title="New"),))
    assert model.score(unknown, ["i0"]) == [0.0]


def test_save_load_round_trip(model: SequentialRetriever, tmp_path: Path) -> None:
    model.save(tmp_path)
    back = SequentialRetriever.load(tmp_path, ITEMS)
    for history in (("i0", "i1"), ("i4",), ("i7", "i0", "i1", "i2", "i3")):
        assert _all_scores(back, *history) == _all_scores(model, *history)
    assert back.training_report == model.training_report


class Stop(Exception):
    pass


def _stop_at(epoch: int):
    def on_epoch(done: int, total: int, loss: float) -> None:
        if done == epoch:
            raise Stop

    return on_epoch


def test_an_interrupted_fit_resumes_and_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    cfg = _cfg(epochs=12, checkpoint_every=3)
    said: list[str] = []
    with pytest.raises(Stop):
        train(cfg, ITEMS, ROWS, tmp_path / "ckpt", said.append, on_epoch=_stop_at(7))
    assert json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())["epoch"] == 6
    resumed = train(cfg, ITEMS, ROWS, tmp_path / "ckpt", said.append)
    assert any("resuming" in s and "epoch 6/12" in s for s in said)
    assert resumed.training_report is not None
    assert resumed.training_report["resumed_from_epoch"] == 6
    assert resumed.training_report["epochs_done"] == 12
    straight = train(cfg, ITEMS, ROWS, tmp_path / "other")
    assert straight.training_report is not None
    assert straight.training_report["resumed_from_epoch"] is None
    assert straight.training_report["final_loss"] == resumed.training_report["final_loss"]
    for a, b in zip(
        _all_scores(resumed, "i2", "i3"), _all_scores(straight, "i2", "i3"), strict=True
    ):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_changed_settings_or_data_start_over_but_pacing_does_not(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    said: list[str] = []
    train(_cfg(epochs=4), ITEMS, ROWS, ckpt, said.append)
    # Another learning rate: the checkpoint is not this model's.
    other = train(_cfg(epochs=4, lr=0.02), ITEMS, ROWS, ckpt, said.append)
    assert other.training_report and other.training_report["resumed_from_epoch"] is None
    assert any("other data, settings or code: starting over" in s for s in said)
    # Other data: likewise.
    said.clear()
    fewer = train(_cfg(epochs=4, lr=0.02), ITEMS, ROWS[:-4], ckpt, said.append)
    assert fewer.training_report and fewer.training_report["resumed_from_epoch"] is None
    assert any("starting over" in s for s in said)
    # More epochs (pacing only): carries on from epoch 4.
    more = train(_cfg(epochs=6, lr=0.02), ITEMS, ROWS[:-4], ckpt, said.append)
    assert more.training_report and more.training_report["resumed_from_epoch"] == 4
    assert more.training_report["epochs_done"] == 6


def test_the_time_budget_stops_training_and_a_bigger_one_resumes(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    said: list[str] = []
    short = train(_cfg(epochs=50, time_budget_s=1e-9), ITEMS, ROWS, ckpt, said.append)
    assert short.training_report is not None
    assert short.training_report["stopped_by"] == "time_budget"
    assert short.training_report["epochs_done"] == 1  # the epoch that crossed the budget
    assert any("stopped by time_budget_s" in s for s in said)
    assert any(s.startswith("sequential: epoch 1/50 loss") and "ETA" in s for s in said)
    # The same budget again: it is spent, nothing more is trained.
    again = train(_cfg(epochs=50, time_budget_s=1e-9), ITEMS, ROWS, ckpt, said.append)
    assert again.training_report and again.training_report["epochs_done"] == 1
    # A bigger budget carries on to the epoch limit.
    done = train(_cfg(epochs=5, time_budget_s=600.0), ITEMS, ROWS, ckpt, said.append)
    assert done.training_report and done.training_report["resumed_from_epoch"] == 1
    assert done.training_report["epochs_done"] == 5
    assert done.training_report["stopped_by"] == "epochs"


def test_sampled_loss_learns_the_order_too() -> None:
    m = train(_cfg(loss="sampled", negatives=4), ITEMS, ROWS)
    assert m.search(_q("i1", "i2"), 1)[0].item.id == "i3"


def test_genre_fit_writes_provenance_and_the_source_loads(tmp_path: Path) -> None:
    from genre_agent.service.fit import fit_source, load_fitted
    from genre_agent.storage.interactions import InteractionStore

    cfg = Config.model_validate(
        {
            "store": {"interactions_path": str(tmp_path / "inter.sqlite")},
            "retrieval": {"sources": {"sequential": 1.0}, "sequential": _cfg(epochs=3)},
        }
    )
    store = InteractionStore(cfg.store.interactions_path)
    store.add(ROWS)
    said: list[str] = []
    report = fit_source(cfg, "sequential", ITEMS, store, said.append)
    prov = json.loads((report.path / "provenance.json").read_text())
    assert prov["kind"] == "sequential"
    assert prov["config"]["hidden"] == 16
    assert prov["training"]["epochs_done"] == 3
    assert prov["training"]["stopped_by"] == "epochs"
    assert (cfg.store.models_dir() / "sequential.ckpt" / "checkpoint.pt").exists()
    assert sum(s.startswith("sequential: epoch") for s in said) == 3
    loaded = load_fitted(cfg, "sequential", ITEMS, store)
    assert isinstance(loaded, SequentialRetriever)
    assert loaded.training_report == prov["training"]
    # A second fit on the same data and settings reuses the finished checkpoint.
    again = fit_source(cfg, "sequential", ITEMS, store, said.append)
    assert again.provenance["training"]["resumed_from_epoch"] == 3
    store.close()


ML_SMALL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-latest-small"


@pytest.mark.real
def test_beats_popularity_on_a_slice_of_ml_latest_small(tmp_path: Path) -> None:
    if not (ML_SMALL / "ratings.csv").exists():
        pytest.skip(f"ml-latest-small is not at {ML_SMALL} (the repo's sibling shared/data)")
    from genre_agent.catalog.items import load_items
    from genre_agent.storage.interactions import read_interactions
    from retrievers.popularity import PopularityRetriever

    items = {it.id: it for it in load_items(ML_SMALL)}
    rows = read_interactions(ML_SMALL)
    users = sorted({r.user_id for r in rows}, key=int)[:200]
    by_user: dict[str, list[Interaction]] = {u: [] for u in users}
    for r in rows:
        if r.user_id in by_user and r.item_id in items:
            by_user[r.user_id].append(r)
    train_rows, held_out = [], {}
    for u, seq in by_user.items():
        seq[:] = time_ordered(seq)
        train_rows += seq[:-1]
        held_out[u] = (tuple(items[r.item_id] for r in seq[:-1]), seq[-1].item_id)
    # A short run: small batches give more updates per second than the default 128.
    cfg = SequentialConfig(epochs=30, time_budget_s=60.0, lr=3e-3, batch_size=32)
    model = train(cfg, items, train_rows, tmp_path / "ckpt")
    pop = PopularityRetriever(items, Counter(r.item_id for r in train_rows))
    ids = sorted(items)

    def mrr(source: Any) -> float:
        """Mean reciprocal rank of the held-out item among every unseen catalog item."""
        total = 0.0
        for history, target in held_out.values():
            got = source.score(RetrievalQuery(history=history), ids)
            scores = dict(zip(ids, got, strict=True))
            seen = {h.id for h in history}
            above = sum(1 for i, v in scores.items() if i not in seen and v > scores[target])
            total += 1 / (above + 1)
        return total / len(held_out)

    seq_mrr, pop_mrr = mrr(model), mrr(pop)
    print(f"MRR sequential {seq_mrr:.4f} popularity {pop_mrr:.4f}; {model.training_report}")
    assert seq_mrr > pop_mrr


def test_a_checkpoint_left_by_other_training_code_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key holds the code's digest: a finished checkpoint of the same data and settings
    but other training code is not reused (it once moved the harness's learned row)."""
    import retrievers.sequential_train as st

    ckpt = tmp_path / "ckpt"
    said: list[str] = []
    train(_cfg(epochs=3), ITEMS, ROWS, ckpt, said.append)
    again = train(_cfg(epochs=3), ITEMS, ROWS, ckpt, said.append)
    assert again.training_report and again.training_report["resumed_from_epoch"] == 3
    monkeypatch.setattr(st, "code_version", lambda: "other code")
    said.clear()
    other = train(_cfg(epochs=3), ITEMS, ROWS, ckpt, said.append)
    assert other.training_report and other.training_report["resumed_from_epoch"] is None
    assert any("other data, settings or code: starting over" in s for s in said)
