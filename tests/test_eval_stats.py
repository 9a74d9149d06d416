"""Paired bootstrap CIs and permutation p-values."""

from __future__ import annotations

import random

import pytest

from genre_eval.stats import bootstrap_ci, paired_bootstrap_ci, paired_permutation_p


def test_identical_systems_have_zero_difference_and_p_one() -> None:
    a = [random.Random(1).random() for _ in range(50)]
    ci = paired_bootstrap_ci(a, a)
    assert (ci.mean, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert paired_permutation_p(a, a) == 1.0


def test_clear_difference_is_significant_and_ci_excludes_zero() -> None:
    rng = random.Random(2)
    b = [rng.random() for _ in range(100)]
    a = [x + 0.2 + rng.gauss(0, 0.05) for x in b]
    ci = paired_bootstrap_ci(a, b)
    assert 0.15 < ci.low < ci.mean < ci.high < 0.25
    assert paired_permutation_p(a, b) < 0.01


def test_noise_is_not_significant() -> None:
    rng = random.Random(4)
    a = [rng.random() for _ in range(60)]
    b = [x + rng.choice([-0.01, 0.01]) for x in a]
    assert paired_permutation_p(a, b) > 0.05


def test_ci_contains_mean_and_is_deterministic() -> None:
    vals = [0.0, 1.0] * 30
    ci = bootstrap_ci(vals, seed=5)
    assert ci.low < 0.5 < ci.high and ci.mean == 0.5
    assert bootstrap_ci(vals, seed=5) == ci


def test_unpaired_lengths_rejected() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap_ci([1.0], [1.0, 2.0])
