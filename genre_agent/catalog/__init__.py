"""Catalog items and their loaders (JSONL, CSV, Parquet, MovieLens), validated whole."""
