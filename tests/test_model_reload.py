"""Models that reload: `genre fit` publishes each model as a new version folder behind one
atomic symlink swap (storage/models.py); a serving process notices the newer version and
swaps the whole loaded model in (service/sources.py, the learned ranker)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from genre_agent.config import load_config
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.llm import FakeLLM
from genre_agent.service.fit import fit_source, provenance
from genre_agent.service.recommender import Recommender
from genre_agent.storage import models
from genre_agent.storage.chroma import ChromaStore, make_client
from genre_agent.storage.interactions import Interaction, InteractionStore


def _write(stamp: str):
    def write(folder: Path) -> None:
        # Two files that must come from the same version.
        (folder / "a.txt").write_text(stamp)
        (folder / "b.txt").write_text(stamp)

    return write


def test_publish_swaps_the_link_keeps_a_few_versions_and_adopts_a_legacy_folder(
    tmp_path: Path,
) -> None:
    final = tmp_path / "itemknn"
    final.mkdir()
    (final / "provenance.json").write_text("{}")  # saved before versioned folders
    assert models.resolve(final) == final
    legacy_token = models.token(final)
    assert legacy_token is not None and legacy_token.startswith("dir:")
    tokens = {legacy_token}
    for n in range(5):
        folder = models.publish(final, _write(str(n)))
        assert models.resolve(final) == folder
        assert (final / "a.txt").read_text() == str(n)
        tokens.add(models.token(final))  # type: ignore[arg-type]
    assert len(tokens) == 6  # every publish changed the token
    # All superseded just now: kept for a worker still loading one (legacy included).
    assert len(models.versions(final)) == 6
    models.prune(final, now=time.time() + models.GRACE_S + 1)
    assert len(models.versions(final)) == models.KEEP
    assert models.versions(final)[-1] == models.resolve(final)
    assert not list(tmp_path.glob(".*"))  # no temporary folder or link left


def test_a_failed_write_leaves_the_published_model(tmp_path: Path) -> None:
    final = tmp_path / "als"
    models.publish(final, _write("good"))

    def broken(folder: Path) -> None:
        (folder / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")

    try:
        models.publish(final, broken)
    except RuntimeError:
        pass
    assert (final / "a.txt").read_text() == "good"
    assert len(models.versions(final)) == 1 and not list(tmp_path.glob(".*"))


def test_readers_never_see_half_of_two_versions(tmp_path: Path) -> None:
    """Readers resolve the link once and read both files while versions are published."""
    final = tmp_path / "m"
    models.publish(final, _write("0"))
    stop = threading.Event()
    mixed: list[tuple[str, str]] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            folder = models.resolve(final)
            assert folder is not None
            try:
                a = (folder / "a.txt").read_text()
                b = (folder / "b.txt").read_text()
            except FileNotFoundError:  # deleted while read: a failure too
                mixed.append(("pruned", str(folder)))
                continue
            reads[0] += 1
            if a != b:
                mixed.append((a, b))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for n in range(1, 150):
        models.publish(final, _write(str(n)))
    stop.set()
    for t in threads:
        t.join()
    assert reads[0] > 0
    assert mixed == []


def _rec(tmp_path: Path, catalog_path: Path) -> Recommender:
    cfg = load_config(
        None,
        overrides={
            "store.kind": "memory",
            "store.collection": f"rl{tmp_path.name[-20:]}",
            "store.models_path": str(tmp_path / "models"),
            "profile.path": str(tmp_path / "p.sqlite"),
            "llm.engine": "fake",
            "ranking.mode": "retrieval",
            "ranking.rationale_top_r": 0,
            "retrieval.sources": {"itemknn": 1.0, "popularity": 0.1},
        },
        use_env=False,
    )
    store = ChromaStore(make_client(cfg.store), cfg.store.collection, FakeEmbedder())
    rec = Recommender(cfg, store, InteractionStore(":memory:"), llm=FakeLLM("first"))
    rec.index(catalog_path)
    return rec


def test_a_refit_while_serving_brings_no_error_and_the_new_model_is_served(
    tmp_path: Path, catalog_path: Path
) -> None:
    rec = _rec(tmp_path, catalog_path)
    ids = sorted(rec.sources.catalog())[:12]
    # Users who watched pairs of items: item-kNN learns the pairs.
    rows = [Interaction(f"u{n}", ids[n % 6], 1.0, 5.0) for n in range(30)]
    rows += [Interaction(f"u{n}", ids[n % 6 + 6], 2.0, 5.0) for n in range(30)]
    rec.interactions.add(rows)
    fit_source(rec.config, "itemknn", rec.sources.catalog(), rec.interactions)
    first = rec.recommend(user_id="u0", k=3)
    v1 = rec.sources.loaded_models()["itemknn"]
    assert v1["data_sha256"] == provenance(rec.config, "itemknn")["data_sha256"]  # type: ignore[index]

    errors: list[BaseException] = []
    served = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                got = rec.recommend(user_id=f"u{served[0] % 30}", k=3)
                assert len(got.items) == 3
                served[0] += 1
            except BaseException as exc:  # noqa: BLE001 - every failure is the test's
                errors.append(exc)

    threads = [threading.Thread(target=serve) for _ in range(2)]
    for t in threads:
        t.start()
    # New interactions, then refits while requests run.
    for n in range(3):
        rec.interactions.add([Interaction(f"new{n}{m}", ids[m], 3.0, 5.0) for m in range(12)])
        fit_source(rec.config, "itemknn", rec.sources.catalog(), rec.interactions)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert served[0] > 0
    rec.recommend(user_id="u0", k=3)
    now = rec.sources.loaded_models()["itemknn"]
    newest = provenance(rec.config, "itemknn")
    assert newest is not None and now["data_sha256"] == newest["data_sha256"]
    assert now["data_sha256"] != v1["data_sha256"] and now["version"] != v1["version"]
    assert first.items


def test_a_serving_recommender_picks_up_a_ranker_another_process_trained(
    tmp_path: Path, catalog_path: Path
) -> None:
    from test_learned_ranker import ROWS, FailingLLM, make

    from genre_agent.service.learn import fit_ranker

    serving = make(tmp_path, catalog_path)
    fit_ranker(serving)
    serving.recommend(history=["m4", "m5"], k=5)
    old = serving.learned_model()
    # Another process (`genre fit --ranker`) with more interactions.
    other = Recommender.from_config(serving.config, llm=FailingLLM(), embedder=FakeEmbedder())
    other.add_interactions(
        [Interaction(f"x{r.user_id}", r.item_id, r.timestamp, r.rating) for r in ROWS]
    )
    report = fit_ranker(other)
    serving.recommend(history=["m4", "m5"], k=5)
    new = serving.learned_model()
    assert new is not old
    assert new.provenance == report.provenance != old.provenance
    serving.recommend(history=["m4", "m5"], k=5)
    assert serving.learned_model() is new  # loaded once, not per request
    other.close()
    serving.close()
