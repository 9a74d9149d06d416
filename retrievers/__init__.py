"""Candidate sources (importable as ``genre_agent.retrievers``).

Each source is a :class:`Retriever`: ``search`` the catalog, ``score`` given candidates.
``retrieval.sources`` in the config names them; ``genre_agent.service.sources`` builds them
from the stores through the ``SOURCES`` table there.
"""

from genre_agent.retrievers.base import RetrievalQuery, Retriever, rank_by_scores, stable_seed
from genre_agent.retrievers.bm25 import BM25Retriever
from genre_agent.retrievers.cf import ItemKNNRetriever
from genre_agent.retrievers.embedding import EmbeddingRetriever
from genre_agent.retrievers.fusion import FusionRetriever
from genre_agent.retrievers.popularity import PopularityRetriever
from genre_agent.retrievers.random import RandomRetriever

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
