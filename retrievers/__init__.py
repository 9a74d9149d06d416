"""Candidate retrievers (importable as ``genre_agent.retrievers``)."""

from genre_agent.retrievers.base import RETRIEVERS, RetrievalQuery, Retriever, register_retriever
from genre_agent.retrievers.bm25 import BM25Retriever
from genre_agent.retrievers.cf import ItemKNNRetriever
from genre_agent.retrievers.embedding import EmbeddingRetriever
from genre_agent.retrievers.fusion import FusionRetriever
from genre_agent.retrievers.popularity import PopularityRetriever

__all__ = [
    "RETRIEVERS",
    "BM25Retriever",
    "EmbeddingRetriever",
    "FusionRetriever",
    "ItemKNNRetriever",
    "PopularityRetriever",
    "RetrievalQuery",
    "Retriever",
    "register_retriever",
]
