"""Candidate sources (importable as ``retrievers``).

Each source is a :class:`Retriever`: ``search`` the catalog, ``score`` given candidates.
``retrieval.sources`` in the config names them; ``genre_agent.service.sources`` builds them
from the stores through the ``SOURCES`` table there.
"""

from retrievers.base import RetrievalQuery, Retriever, rank_by_scores, stable_seed
from retrievers.bm25 import BM25Retriever
from retrievers.cf import ItemKNNRetriever
from retrievers.embedding import EmbeddingRetriever
from retrievers.fusion import FusionRetriever
from retrievers.popularity import PopularityRetriever
from retrievers.random import RandomRetriever

__all__ = [
    "BM25Retriever",
    "EmbeddingRetriever",
    "FusionRetriever",
    "ItemKNNRetriever",
    "PopularityRetriever",
    "RandomRetriever",
    "RetrievalQuery",
    "Retriever",
    "rank_by_scores",
    "stable_seed",
]
