"""A dataset served as the product serves a catalog: the harness's Recommender factory.

The items go into a Chroma collection (cached across runs, keyed by the dataset's SHA-256
and the embedder), the training interactions into an interaction store, and each fitted
source a config uses (``service.fit.FITTERS``) is fitted on them as ``genre fit`` would,
once per (kind, settings). Every system of an experiment, baseline or LLM
variant, is then a :class:`~genre_agent.service.recommender.Recommender` built from its own
config over this one world, and the harness only calls its public methods.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from genre_agent.catalog.items import Item
from genre_agent.config import Config, EmbedderConfig, StoreConfig, default_home
from genre_agent.embedders import get_embedder
from genre_agent.llm.base import LLM
from genre_agent.ranking import needs, ranker_sources
from genre_agent.ranking.learned import LearnedModel
from genre_agent.service.fit import FITTERS, FittedSource
from genre_agent.service.learn import Example, settings, train_ranker
from genre_agent.service.recommender import Recommender
from genre_agent.service.sources import Sources
from genre_agent.storage.chroma import ChromaStore, make_client
from genre_agent.storage.interactions import InteractionStore
from genre_eval.datasets import Dataset
from genre_eval.protocols import train_interactions
from retrievers.base import Retriever


def index_cache_dir() -> Path:
    """Where embedded eval catalogs persist (``GENRE_EVAL_INDEX``, else under GENRE_HOME)."""
    env = os.environ.get("GENRE_EVAL_INDEX")
    return Path(env) if env else default_home() / "eval-index"


class EvalWorld:
    """One dataset's catalog, training interactions and fitted models, shared by systems."""

    def __init__(self, ds: Dataset, embedder: EmbedderConfig) -> None:
        self.ds = ds
        self.embedder_cfg = embedder
        self.train = train_interactions(ds)
        self.interactions = InteractionStore(":memory:")
        self.interactions.add(self.train)
        self.popularity: dict[str, int] = self.interactions.item_counts()
        self._fitted: dict[str, FittedSource] = {}
        self._learned: dict[str, LearnedModel] = {}
        self._store: ChromaStore | None = None

    @property
    def store(self) -> ChromaStore:
        """The embedded catalog, built once per (dataset, embedder) and then reused."""
        if self._store is None:
            emb = get_embedder(self.embedder_cfg)
            if self.embedder_cfg.kind == "fake":
                client = make_client(StoreConfig(kind="memory"))
            else:
                client = make_client(StoreConfig(kind="embedded", path=index_cache_dir()))
            name = f"eval_{self.ds.sha256[:16]}_{self.embedder_cfg.kind.replace('-', '_')}"
            store = ChromaStore(client, name, emb)
            if store.count() != len(self.ds.items):
                store.upsert(self.ds.items.values())  # idempotent: only what is missing
            self._store = store
        return self._store

    def fitted(self, cfg: Config, kind: str) -> FittedSource:
        """``kind`` fitted on the training split with ``cfg``'s settings (cached)."""
        fitter = FITTERS[kind]
        key = json.dumps([kind, fitter.settings(cfg)], sort_keys=True, default=str)
        if key not in self._fitted:
            # Training checkpoints (the sequential model) go to the harness's own cache,
            # never into the served models folder; a rerun on the same split reuses them.
            models = cfg.store.model_copy(update={"models_path": index_cache_dir() / "models"})
            fit_cfg = cfg.model_copy(update={"store": models})
            self._fitted[key] = fitter.fit(fit_cfg, self.ds.items, self.train, None)
        return self._fitted[key]

    def _fitted_for(self, cfg: Config) -> dict[str, Retriever]:
        """Every fitted source ``cfg`` runs or (learned mode) reads features from."""
        kinds = [k for k, w in cfg.retrieval.sources.items() if w > 0] + ranker_sources(cfg)
        return {k: self.fitted(cfg, k) for k in dict.fromkeys(kinds) if k in FITTERS}

    def learned(self, cfg: Config, llm: LLM | None = None) -> LearnedModel:
        """The learned ranker of ``cfg``, trained once per settings on the validation
        targets: history = every interaction before a user's last two, target = the one
        before the last, sources fitted on the training split. The test targets are the
        forbidden pairs: the trainer refuses to see any of them."""
        key = json.dumps([settings(cfg), self.embedder_cfg.model_dump(mode="json")], default=str)
        if key not in self._learned:
            users = self.ds.by_user
            examples = [
                Example(u, rows[:-2], rows[-2].item_id)
                for u, rows in sorted(users.items())
                if len(rows) >= 3
            ]
            forbidden = {(u, rows[-1].item_id) for u, rows in users.items() if rows}
            self._learned[key] = train_ranker(
                cfg,
                self.store,
                self.ds.items,
                self.train,
                examples,
                forbidden,
                fitted=self._fitted_for(cfg),
                llm=llm,
                data_sha256=self.ds.sha256,
            )
        return self._learned[key]

    def recommender(
        self, cfg: Config, llm: LLM | None = None, catalog: Mapping[str, Item] | None = None
    ) -> Recommender:
        """A Recommender for ``cfg`` over this world. ``catalog`` replaces the items the
        sources read (an enriched copy of the dataset's items)."""
        sources = Sources(cfg, self.store, self.interactions, fitted=self._fitted_for(cfg))
        sources.set_catalog(dict(catalog) if catalog is not None else self.ds.items)
        learned = self.learned(cfg, llm) if needs(cfg).learned_model else None
        return Recommender(
            cfg, self.store, self.interactions, llm=llm, sources=sources, learned=learned
        )
