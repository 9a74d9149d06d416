"""What the learned ranker reads when serving: its fitted model (``genre fit --ranker``,
or one given by the harness) and the item statistics its features count."""

from __future__ import annotations

from genre_agent.config import Config
from genre_agent.ranking.learned import FeatureBuilder, ItemStats, LearnedModel, ranker_folder
from genre_agent.service.sources import Sources
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.chroma import ChromaStore
from genre_agent.storage.models import snapshot


class LearnedState:
    def __init__(
        self,
        config: Config,
        store: ChromaStore,
        interactions: InteractionBackend,
        sources: Sources,
        model: LearnedModel | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.interactions = interactions
        self.sources = sources
        self._model = model
        # The published version the loaded model came from; False: given, never reloaded.
        self._token: str | None | bool = False if model is not None else None
        self._stats: tuple[int, ItemStats] | None = None

    def model(self) -> LearnedModel:
        """The model from models/ranker/ (a clear error if none). A newer `genre fit
        --ranker` (another process's too) is noticed on the next request: that version is
        loaded whole, then swapped in."""
        if self._model is not None and self._token is False:
            return self._model  # given (the harness's)
        final = ranker_folder(self.config)
        tok, found = snapshot(final)
        if self._model is None or tok != self._token:
            folder = found or final
            model = LearnedModel.load(folder)
            model.check(self.config, folder)
            self._model, self._token = model, tok
        return self._model

    def version(self) -> str | None:
        """The published version the loaded model came from (None: none loaded, or given)."""
        return self._token if isinstance(self._token, str) else None

    def reload(self) -> None:
        """Load the model again on the next request (after a refit)."""
        self._model, self._token = None, None

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
