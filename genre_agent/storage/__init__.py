"""Where things are kept: the Chroma item store, the interaction store and SQLite helpers."""
