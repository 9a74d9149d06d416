"""The request path as named stages, in order:

resolve (history, profile, cold start) -> retrieve -> rank -> evidence -> explain -> trace

Each stage is a small module here with its own tests; :class:`Pipeline` runs them, and
every door (``Recommender.recommend``/``recommend_many``/``recommend_stream``/``rank``/
``rank_many``, the HTTP service, the evaluation harness) goes through it.
"""
