"""The service layer: the Recommender and what builds on it (chat, profiles, cold start)."""
