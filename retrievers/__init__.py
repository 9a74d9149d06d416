"""Candidate retrievers (importable as ``genre_agent.retrievers``)."""

from genre_agent.retrievers.base import RETRIEVERS, RetrievalQuery, Retriever, register_retriever
from genre_agent.retrievers.embedding import EmbeddingRetriever

__all__ = ["RETRIEVERS", "EmbeddingRetriever", "RetrievalQuery", "Retriever", "register_retriever"]
