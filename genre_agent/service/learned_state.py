"""What the learned ranker reads when serving: its fitted model (``genre fit --ranker``,
or one given by the harness) and the item statistics its features count."""

from __future__ import annotations

from genre_agent.config import Config
from genre_agent.ranking.learned import FeatureBuilder, ItemStats, LearnedModel, ranker_folder
from genre_agent.service.sources import Sources
from genre_agent.storage.chroma import ChromaStore
from genre_agent.storage.interactions import InteractionStore


class LearnedState:
    def __init__(
        self,
        config: Config,
        store: ChromaStore,
        interactions: InteractionStore,
        sources: Sources,
        model: LearnedModel | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.interactions = interactions
        self.sources = sources
        self._model = model
        self._stats: tuple[int, ItemStats] | None = None

    def model(self) -> LearnedModel:
        """The model, loaded from models/ranker/ on first use; a clear error if none."""
        if self._model is None:
            folder = ranker_folder(self.config)
            self._model = LearnedModel.load(folder)
            self._model.check(self.config, folder)
        return self._model

    def reload(self) -> None:
        """Load the model again on the next request (after a refit)."""
        self._model = None

    def item_stats(self) -> ItemStats:
        """Popularity and recency of every item, recounted when the interactions change."""
        version = self.interactions.count()
        if self._stats is None or self._stats[0] != version:
            stats = ItemStats.build(self.interactions.all(), self.sources.catalog())
            self._stats = (version, stats)
        return self._stats[1]

    def feature_builder(self) -> FeatureBuilder:
        return FeatureBuilder(
            self.config, self.sources.get, self.store.embeddings, self.item_stats()
        )

    def parts(self) -> tuple[LearnedModel, FeatureBuilder]:
        """What the learned ranker is built from (ranking.RankerContext.learned)."""
        return self.model(), self.feature_builder()
