"""The HTTP service (`genre serve`): a FastAPI app over one shared Recommender."""

from genre_agent.http.app import create_app

__all__ = ["create_app"]
