"""Paired statistics over per-user metric values: bootstrap CIs and permutation tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Interval:
    """Percentile bootstrap CI of the mean (resampling users with replacement)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Interval(0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(x.mean()), float(lo), float(hi))


def paired_bootstrap_ci(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Interval:
    """CI of mean(a - b), resampling the same users for both systems."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return bootstrap_ci(np.asarray(a, float) - np.asarray(b, float), n_boot, alpha, seed)


def paired_permutation_p(
    a: Sequence[float], b: Sequence[float], n_perm: int = 5000, seed: int = 0
) -> float:
    """Two-sided sign-flip permutation p-value of mean(a - b) = 0.

    p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + n_perm), s random signs per user.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    d = np.asarray(a, float) - np.asarray(b, float)
    if d.size == 0 or not np.any(d):
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
    observed = abs(d.mean())
    extreme = np.sum(np.abs((signs * d).mean(axis=1)) >= observed - 1e-12)
    return float((1 + extreme) / (1 + n_perm))
