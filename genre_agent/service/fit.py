"""``genre fit``: fit the sources that learn from interactions, and persist them with provenance.

Item-kNN is fitted here and saved under ``store.models_path/itemknn/`` (default: a
``models/`` folder next to the interactions file): the similarity matrix, its item ids, and
``provenance.json`` (the interaction data's SHA-256, the config that shaped the model,
counts and the time). A fit writes to a temporary folder and renames
it into place only when complete, so a killed fit never damages the model served before.

Popularity needs no fit: it counts the interaction store on every request whose store has
changed, so new interactions count at once. BM25 and the embedding source read the catalog.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_agent.catalog.items import Item
from genre_agent.config import Config
from genre_agent.errors import GenreError
from genre_agent.retrievers.cf import ItemKNNRetriever
from genre_agent.storage.interactions import InteractionStore

Announce = Callable[[str], None]


class FitError(GenreError):
    """A source cannot be fitted or loaded (no interactions, no fitted model)."""


@dataclass(frozen=True)
class FitReport:
    kind: str
    path: Path
    provenance: dict[str, Any]


def _folder(cfg: Config, kind: str) -> Path:
    return cfg.store.models_dir() / kind


def fit_itemknn(
    cfg: Config,
    items: Mapping[str, Item],
    interactions: InteractionStore,
) -> FitReport:
    """Fit item-kNN on every stored interaction and replace the saved model atomically."""
    rows = interactions.all()
    if not rows:
        raise FitError(
            f"genre fit: no interactions in {interactions.path}: load some with "
            "`genre index CATALOG --interactions FILE` (item-kNN learns from them)"
        )
    if not items:
        raise FitError("genre fit: the catalog is empty: run `genre index CATALOG` first")
    t0 = time.perf_counter()
    neighbours = cfg.retrieval.itemknn_neighbours
    model = ItemKNNRetriever.fit(items, rows, neighbours)
    known = sum(1 for r in rows if r.item_id in items)
    provenance = {
        "kind": "itemknn",
        "data_sha256": interactions.fingerprint(),
        "interactions": len(rows),
        "interactions_in_catalog": known,
        "users": len({r.user_id for r in rows}),
        "items": len(items),
        "config": {"itemknn_neighbours": neighbours},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fit_seconds": round(time.perf_counter() - t0, 3),
    }
    final = _folder(cfg, "itemknn")
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return FitReport("itemknn", final, provenance)


def load_itemknn(
    cfg: Config,
    items: Mapping[str, Item],
    interactions: InteractionStore,
    announce: Announce | None = None,
) -> ItemKNNRetriever:
    """The saved item-kNN model; a clear error if there is none."""
    folder = _folder(cfg, "itemknn")
    meta_path = folder / "provenance.json"
    if not meta_path.exists():
        stored = interactions.count()
        hint = (
            "run `genre fit`"
            if stored
            else "no interactions are stored either: `genre index CATALOG --interactions FILE`"
        )
        raise FitError(
            f"retrieval.sources.itemknn needs a fitted model at {folder}: {hint} "
            "(or set its weight to 0)"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    now = interactions.count()
    if announce and now != meta.get("interactions"):
        announce(
            f"note: itemknn was fitted on {meta.get('interactions')} interactions; the store "
            f"now holds {now}. Run `genre fit` to include the new ones."
        )
    return ItemKNNRetriever.load(folder, items)


def provenance(cfg: Config, kind: str) -> dict[str, Any] | None:
    path = _folder(cfg, kind) / "provenance.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
