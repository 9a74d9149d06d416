"""The configured candidate sources, built from the stores by kind, and their fusion.

``retrieval.sources`` names the sources and their weights; ``SOURCES`` maps each kind to
the function that builds it. Serving and the evaluation harness both go through
:class:`Sources`, so a measured configuration is the served one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genre_agent.catalog.items import Item
from genre_agent.config import Config, SourceKind
from genre_agent.service.fit import FITTERS, NotFitted, load_fitted, model_token, provenance
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.chroma import ChromaStore
from retrievers.base import Retriever
from retrievers.bm25 import BM25Retriever
from retrievers.cf import ItemKNNRetriever
from retrievers.embedding import EmbeddingRetriever
from retrievers.fusion import FusionRetriever
from retrievers.popularity import PopularityRetriever
from retrievers.random import RandomRetriever

Announce = Callable[[str], None]


@dataclass
class SourceContext:
    """What a source may be built from."""

    config: Config
    store: ChromaStore
    interactions: InteractionBackend
    catalog: Callable[[], Mapping[str, Item]]
    announce: Announce | None = None


def _embedding(ctx: SourceContext) -> Retriever:
    return EmbeddingRetriever(
        ctx.store, history_len=ctx.config.retrieval.history_len, items=ctx.catalog()
    )


def _fitted(kind: str) -> Callable[[SourceContext], Retriever]:
    """A source ``genre fit`` fitted (service.fit.FITTERS), loaded from its folder."""

    def build(ctx: SourceContext) -> Retriever:
        return load_fitted(ctx.config, kind, ctx.catalog(), ctx.interactions, ctx.announce)

    return build


def _bm25(ctx: SourceContext) -> Retriever:
    return BM25Retriever(ctx.catalog(), history_len=ctx.config.retrieval.history_len)


def _popularity(ctx: SourceContext) -> Retriever:
    return PopularityRetriever(ctx.catalog(), ctx.interactions.item_counts())


def _random(ctx: SourceContext) -> Retriever:
    return RandomRetriever(ctx.catalog(), seed=ctx.config.retrieval.seed)


SOURCES: dict[SourceKind, Callable[[SourceContext], Retriever]] = {
    "embedding": _embedding,
    "itemknn": _fitted("itemknn"),
    "bm25": _bm25,
    "popularity": _popularity,
    "random": _random,
    "als": _fitted("als"),
    "bpr": _fitted("bpr"),
    "sequential": _fitted("sequential"),
}


@dataclass
class Sources:
    """Builds each configured source once; ``fitted`` injects ready models by kind (the
    harness fits on its training split in memory instead of loading ``genre fit``'s)."""

    config: Config
    store: ChromaStore
    interactions: InteractionBackend
    fitted: dict[str, Retriever] = field(default_factory=dict)
    announce: Announce | None = None
    _built: dict[str, Retriever] = field(default_factory=dict)
    _catalog: dict[str, Item] | None = None
    _pop_version: tuple[int, int, int] = (-1, -1, -1)
    # Fitted models: the published version each loaded model came from (storage/models.py),
    # and the kinds a request is loading now (others keep serving the loaded version).
    _tokens: dict[str, str | None] = field(default_factory=dict)
    _loading: set[str] = field(default_factory=set)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)

    def catalog(self) -> dict[str, Item]:
        if self._catalog is None:
            self._catalog = {it.id: it for it in self.store.all_items()}
        return self._catalog

    def set_catalog(self, items: Mapping[str, Item]) -> None:
        """Use these items as the catalog the sources read (the harness's dataset)."""
        self._catalog = dict(items)
        self._built.clear()

    def lookup(self, ids: Sequence[str]) -> dict[str, Item]:
        """Catalog items by id: from the loaded catalog, else from the store."""
        if self._catalog is not None:
            return {i: self._catalog[i] for i in ids if i in self._catalog}
        return self.store.get(ids)

    def invalidate(self) -> None:
        """The catalog changed (index, enrichment): rebuild every source on next use."""
        self._catalog = None
        self._built.clear()
        self._tokens.clear()

    def get(self, kind: SourceKind) -> Retriever:
        if kind in self.fitted:
            return self.fitted[kind]
        if kind == "popularity":
            # New interactions count at once: recount when the store changed.
            version = self.interactions.version()
            if version != self._pop_version:
                self._built.pop(kind, None)
                self._pop_version = version
        if kind in FITTERS:
            return self._fitted_model(kind)
        if kind not in self._built:
            self._built[kind] = SOURCES[kind](self._context())
        return self._built[kind]

    def _context(self) -> SourceContext:
        return SourceContext(
            self.config, self.store, self.interactions, self.catalog, self.announce
        )

    def _fitted_model(self, kind: SourceKind) -> Retriever:
        """The fitted model of ``kind``, reloaded when `genre fit` published a newer one.
        The swap is one assignment of a whole loaded model: a request holds the old or the
        new one, never a mix. While one request loads the new version, the others keep
        serving the loaded one."""
        tok = model_token(self.config, kind)
        have = self._built.get(kind)
        if have is not None and self._tokens.get(kind) == tok:
            return have
        with self._reload_lock:
            mine = kind not in self._loading
            if mine:
                self._loading.add(kind)
        if not mine and have is not None:
            return have
        try:
            model = SOURCES[kind](self._context())
            # Published again while loading: which version loaded is unknown, so the next
            # request loads again (and loaded_models() says no version meanwhile).
            after = model_token(self.config, kind)
            self._built[kind] = model
            self._tokens[kind] = tok if after == tok else "unknown"
        finally:
            if mine:
                with self._reload_lock:
                    self._loading.discard(kind)
        if have is not None and self.announce:
            self.announce(f"loaded the newer {kind} model ({tok})")
        return model

    def loaded_models(self) -> dict[str, dict[str, Any]]:
        """The fitted models this process serves now: their version and provenance."""
        out: dict[str, dict[str, Any]] = {}
        for kind in list(self._built):
            if kind not in FITTERS or kind in self.fitted:
                continue
            out[kind] = {
                "version": self._tokens.get(kind),
                **_provenance_of(self._tokens.get(kind), self.config, kind),
            }
        return out

    def versions(self) -> dict[str, str | None]:
        """The published version (token) each loaded fitted model came from."""
        return dict(self._tokens)

    def cf_model(self) -> ItemKNNRetriever | None:
        """The item-kNN model for evidence, if one is fitted (never an error)."""
        got = self.fitted.get("itemknn")
        if isinstance(got, ItemKNNRetriever):
            return got
        if provenance(self.config, "itemknn") is None:
            return None
        model = self.get("itemknn")
        return model if isinstance(model, ItemKNNRetriever) else None

    def active(self) -> dict[SourceKind, float]:
        """The sources that run (weight > 0), in config order."""
        return {k: w for k, w in self.config.retrieval.sources.items() if w > 0}

    def popular(self) -> FusionRetriever:
        """The popularity source alone (what a cold request gets), whatever its weight."""
        r = self.config.retrieval
        return FusionRetriever([self.get("popularity")], [1.0], c=r.rrf_c, depth=r.depth)

    def fusion(self, notes: list[str] | None = None) -> FusionRetriever:
        """The fused active sources (see ``fused``)."""
        return self.fused(notes)[0]

    def fused(self, notes: list[str] | None = None) -> tuple[FusionRetriever, dict[str, float]]:
        """The fused active sources and their weights. A source with no fitted model is
        skipped with a note (appended to ``notes``) while another source answers; with
        ``retrieval.strict``, or when no source is left, it is the error it was."""
        r = self.config.retrieval
        built: dict[str, Retriever] = {}
        weights: dict[str, float] = {}
        missing: list[tuple[SourceKind, NotFitted]] = []
        for kind, w in self.active().items():
            try:
                built[kind] = self.get(kind)
                weights[kind] = w
            except NotFitted as exc:
                if r.strict:
                    raise
                missing.append((kind, exc))
        if missing and not built:
            raise missing[0][1]
        for gone, _ in missing:
            note = (
                f"source {gone} skipped: it has no fitted model (run `genre fit`; "
                "retrieval.strict = true makes this an error)"
            )
            if notes is not None:
                notes.append(note)
            elif self.announce:
                self.announce(f"note: {note}")
        fusion = FusionRetriever(
            list(built.values()), list(weights.values()), c=r.rrf_c, depth=r.depth
        )
        return fusion, weights


def _provenance_of(tok: str | None, config: Config, kind: str) -> dict[str, Any]:
    """The provenance of the version a token names (what was loaded, not what is newest)."""
    from genre_agent.storage.models import resolve

    if tok == "unknown":
        return {}
    if tok is None or not tok.startswith("v:"):
        folder = resolve(config.store.models_dir() / kind)
    else:
        folder = config.store.models_dir() / tok[2:]
    path = folder / "provenance.json" if folder is not None else None
    if path is None or not path.exists():
        return {}
    meta = json.loads(path.read_text(encoding="utf-8"))
    return {k: meta[k] for k in ("created", "data_sha256", "interactions") if k in meta}
