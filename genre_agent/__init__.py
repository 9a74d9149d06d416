"""GENRE: a self-hosted recommender with an open LLM as ranker and explainer."""

from genre_agent.catalog.items import Item, load_items, load_movielens_items
from genre_agent.config import Config, load_config
from genre_agent.service.recommender import Recommender, RecRequest
from genre_agent.types import Candidate, RankedItem, Recommendation, Trace

__all__ = [
    "Candidate",
    "Config",
    "Item",
    "RankedItem",
    "RecRequest",
    "Recommendation",
    "Recommender",
    "Trace",
    "load_config",
    "load_items",
    "load_movielens_items",
]
__version__ = "0.1.0"
