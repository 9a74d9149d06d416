"""The statistics of a report: bootstrap CIs over users, Welch's t and the sign test."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps


def bootstrap_mean_ci(
    values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling users with replacement (seeded)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def bootstrap_diff_ci(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """CI of mean(b) - mean(a), resampling each group's users independently."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size == 0 or y.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    mx = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    my = y[rng.integers(0, y.size, size=(n_boot, y.size))].mean(axis=1)
    lo, hi = np.quantile(my - mx, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's two-sample t statistic of mean(b) - mean(a) and its two-sided p-value:
    t = (mean_b - mean_a) / sqrt(var_a / n_a + var_b / n_b) (sample variances). Two groups
    without any variance: t = 0, p = 1 when their means agree, else p = 0."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's t needs two users per group, got {x.size} and {y.size}")
    if x.var() == 0 and y.var() == 0:
        same = math.isclose(float(x.mean()), float(y.mean()))
        return (0.0, 1.0) if same else (math.copysign(1e9, y.mean() - x.mean()), 0.0)
    res = sps.ttest_ind(y, x, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p-value of ``wins`` out of ``wins + losses`` at 1/2
    (ties left out); 1.0 when nothing was decided."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(sps.binomtest(wins, n, 0.5).pvalue)
