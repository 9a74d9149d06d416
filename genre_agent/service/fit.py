"""``genre fit``: fit the sources that learn from interactions, and persist them with provenance.

``FITTERS`` maps each fitted source kind (item-kNN, ALS, BPR, the sequential model) to how
it is fitted from interaction rows and loaded back. Each is saved under
``store.models_path/<kind>/`` (default: a ``models/`` folder next to the interactions file)
with ``provenance.json`` (the interaction data's SHA-256, the config that shaped the model,
counts and the time). A fit writes to a temporary folder and renames it into place only when
complete, so a killed fit never damages the model served before; a running `genre serve`
notices the new version and loads it (storage/models.py).

Popularity needs no fit: it counts the interaction store on every request whose store has
changed, so new interactions count at once. BM25 and the embedding source read the catalog.
The evaluation harness fits the same ``FITTERS`` in memory on its training split.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from genre_agent.catalog.items import Item
from genre_agent.config import Config
from genre_agent.errors import GenreError
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.interactions import Interaction
from genre_agent.storage.models import publish, resolve, token
from retrievers.base import Retriever
from retrievers.cf import ItemKNNRetriever
from retrievers.mf import ALSRetriever, BPRRetriever

Announce = Callable[[str], None]


class FitError(GenreError):
    """A source cannot be fitted or loaded (no interactions, no fitted model)."""


class NotFitted(FitError):
    """A configured source has no fitted model (``retrieval.strict`` decides: skip or fail)."""


class FittedSource(Retriever, Protocol):
    """A source that is fitted from interactions and saved to a folder."""

    def save(self, folder: Path) -> None: ...


@dataclass(frozen=True)
class Fitter:
    """How one source kind is fitted from interaction rows and loaded back.

    ``fit(cfg, items, rows, announce)`` returns the model; ``settings(cfg)`` is the config
    that shapes it (recorded in provenance, and the harness's cache key); ``load(folder,
    items, cfg)`` reads a saved model.
    """

    fit: Callable[
        [Config, Mapping[str, Item], Sequence[Interaction], Announce | None], FittedSource
    ]
    load: Callable[[Path, Mapping[str, Item], Config], FittedSource]
    settings: Callable[[Config], dict[str, Any]]


def _fit_sequential(
    cfg: Config, items: Mapping[str, Item], rows: Sequence[Interaction], announce: Announce | None
) -> FittedSource:
    # torch is imported only when the sequential model is used.
    from retrievers.sequential_train import train

    checkpoint = cfg.store.models_dir() / "sequential.ckpt"
    return train(cfg.retrieval.sequential, items, rows, checkpoint, announce)


def _load_sequential(folder: Path, items: Mapping[str, Item], cfg: Config) -> FittedSource:
    from retrievers.sequential import SequentialRetriever

    return SequentialRetriever.load(folder, items)


FITTERS: dict[str, Fitter] = {
    "itemknn": Fitter(
        fit=lambda cfg, items, rows, announce: ItemKNNRetriever.fit(
            items, rows, cfg.retrieval.itemknn_neighbours
        ),
        load=lambda folder, items, cfg: ItemKNNRetriever.load(folder, items),
        settings=lambda cfg: {"itemknn_neighbours": cfg.retrieval.itemknn_neighbours},
    ),
    "als": Fitter(
        fit=lambda cfg, items, rows, announce: ALSRetriever.fit(items, rows, cfg.retrieval.als),
        load=lambda folder, items, cfg: ALSRetriever.load(folder, items),
        settings=lambda cfg: cfg.retrieval.als.model_dump(),
    ),
    "bpr": Fitter(
        fit=lambda cfg, items, rows, announce: BPRRetriever.fit(items, rows, cfg.retrieval.bpr),
        load=lambda folder, items, cfg: BPRRetriever.load(folder, items),
        settings=lambda cfg: cfg.retrieval.bpr.model_dump(),
    ),
    "sequential": Fitter(
        fit=_fit_sequential,
        load=_load_sequential,
        settings=lambda cfg: cfg.retrieval.sequential.model_dump(),
    ),
}


@dataclass(frozen=True)
class FitReport:
    kind: str
    path: Path
    provenance: dict[str, Any]


def _folder(cfg: Config, kind: str) -> Path:
    return cfg.store.models_dir() / kind


def save_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """``write(folder)`` fills a new version folder, then ``final`` names it in one atomic
    rename (storage/models.py): running workers load the new model whole on their next
    request."""
    publish(final, write)


def fit_source(
    cfg: Config,
    kind: str,
    items: Mapping[str, Item],
    interactions: InteractionBackend,
    announce: Announce | None = None,
) -> FitReport:
    """Fit ``kind`` on every stored interaction and replace its saved model atomically."""
    if kind not in FITTERS:
        raise FitError(f"genre fit: {kind!r} is not a fitted source; fitted: {sorted(FITTERS)}")
    rows = interactions.all()
    if not rows:
        raise FitError(
            f"genre fit: no interactions in {interactions.describe()}: load some with "
            f"`genre index CATALOG --interactions FILE` ({kind} learns from them)"
        )
    if not items:
        raise FitError("genre fit: the catalog is empty: run `genre index CATALOG` first")
    fitter = FITTERS[kind]
    t0 = time.perf_counter()
    model = fitter.fit(cfg, items, rows, announce)
    known = sum(1 for r in rows if r.item_id in items)
    prov = {
        "kind": kind,
        "data_sha256": interactions.fingerprint(),
        "interactions": len(rows),
        "interactions_in_catalog": known,
        "users": len({r.user_id for r in rows}),
        "items": len(items),
        "config": fitter.settings(cfg),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fit_seconds": round(time.perf_counter() - t0, 3),
    }
    # How training ended (epochs done, what stopped it), for the sources that report it.
    training = getattr(model, "training_report", None)
    if training is not None:
        prov["training"] = training

    def write(tmp: Path) -> None:
        model.save(tmp)
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=2), encoding="utf-8")

    final = _folder(cfg, kind)
    save_atomically(final, write)
    return FitReport(kind, final, prov)


def load_fitted(
    cfg: Config,
    kind: str,
    items: Mapping[str, Item],
    interactions: InteractionBackend,
    announce: Announce | None = None,
) -> FittedSource:
    """The saved model of ``kind``; a clear error if there is none."""
    folder = resolve(_folder(cfg, kind)) or _folder(cfg, kind)  # one version, read whole
    meta_path = folder / "provenance.json"
    if not meta_path.exists():
        stored = interactions.count()
        hint = (
            "run `genre fit`"
            if stored
            else "no interactions are stored either: `genre index CATALOG --interactions FILE`"
        )
        raise NotFitted(
            f"retrieval.sources.{kind} needs a fitted model at {folder}: {hint} "
            "(or set its weight to 0)"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    now = interactions.count()
    if announce and now != meta.get("interactions"):
        announce(
            f"note: {kind} was fitted on {meta.get('interactions')} interactions; the store "
            f"now holds {now}. Run `genre fit` to include the new ones."
        )
    settings = FITTERS[kind].settings(cfg)
    if announce and meta.get("config") != settings:
        announce(
            f"note: {kind} was fitted with {meta.get('config')}; the config now says "
            f"{settings}. Run `genre fit` to refit."
        )
    return FITTERS[kind].load(folder, items, cfg)


def model_token(cfg: Config, kind: str) -> str | None:
    """Changes whenever `genre fit` publishes a new model of ``kind`` (one readlink)."""
    return token(_folder(cfg, kind))


def provenance(cfg: Config, kind: str) -> dict[str, Any] | None:
    path = _folder(cfg, kind) / "provenance.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def kinds_to_fit(cfg: Config) -> list[str]:
    """What `genre fit` fits: item-kNN (it also serves evidence) and every other fitted
    source with a weight > 0."""
    active = [k for k, w in cfg.retrieval.sources.items() if w > 0 and k in FITTERS]
    # The ranker's own sources (the learned model's features) are read when serving.
    from genre_agent.ranking import ranker_sources

    active = list(dict.fromkeys(active + [k for k in ranker_sources(cfg) if k in FITTERS]))
    return ["itemknn"] + [k for k in active if k != "itemknn"]
