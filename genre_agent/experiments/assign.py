"""Which variant a user gets: a stable hash of experiment name and user id."""

from __future__ import annotations

import hashlib

from genre_agent.experiments.config import ExperimentConfig, VariantConfig


def bucket(experiment: str, user_id: str) -> float:
    """A number in [0, 1) from sha256(f"{experiment}:{user_id}") (the first 8 bytes): the
    same in every process and on every machine (Python's ``hash`` is salted per process)."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(exp: ExperimentConfig, user_id: str) -> VariantConfig:
    """The variant whose slice of the cumulative shares holds the user's bucket."""
    point = bucket(exp.name, user_id)
    edge = 0.0
    for v in exp.variants:
        edge += v.share
        if point < edge:
            return v
    # Shares sum to 1 within rounding: a bucket past the last edge belongs to the last
    # variant with a share.
    return [v for v in exp.variants if v.share > 0][-1]
