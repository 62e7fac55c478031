"""Paired significance of a metric difference: the randomization test against an exact
enumeration of every sign vector and against scipy.stats.permutation_test, the bootstrap interval
against scipy.stats.bootstrap, and controls that must come out significant or not."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from retrieval.metrics.significance import (
    bootstrap_interval,
    compare_per_query,
    randomization_p_value,
)

scipy_stats = pytest.importorskip("scipy.stats")


def exact_p_value(d: np.ndarray) -> float:
    """All 2^n sign vectors, the share whose |mean| reaches the observed one (ties counted)."""
    observed = abs(d.mean())
    flips = [abs((np.array(s) * d).mean()) >= observed - 1e-12
             for s in itertools.product([-1, 1], repeat=len(d))]  # fmt: skip
    return float(np.mean(flips))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_randomization_p_value_matches_exact_enumeration(seed):
    d = np.random.default_rng(seed).normal(0.05, 0.2, size=12)
    exact = exact_p_value(d)
    found = randomization_p_value(d, resamples=40_000, seed=seed)
    assert found == pytest.approx(exact, abs=0.008)  # 3 binomial sd at p = 0.5 is 0.0075


def test_randomization_p_value_matches_scipy_permutation_test():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, size=60)
    b = np.clip(a + rng.normal(0.04, 0.15, size=60), 0, 1)
    reference = scipy_stats.permutation_test(
        (b, a), lambda x, y: np.mean(x - y), permutation_type="samples",
        n_resamples=40_000, alternative="two-sided", random_state=0,
    ).pvalue  # fmt: skip
    assert randomization_p_value(b - a, resamples=40_000) == pytest.approx(reference, abs=0.01)


def test_bootstrap_interval_matches_scipy_percentile_bootstrap():
    d = np.random.default_rng(4).normal(0.02, 0.1, size=100)
    reference = scipy_stats.bootstrap(
        (d,), np.mean, method="percentile", n_resamples=40_000, random_state=0
    ).confidence_interval
    low, high = bootstrap_interval(d, resamples=40_000)
    assert low == pytest.approx(reference.low, abs=0.002)
    assert high == pytest.approx(reference.high, abs=0.002)
    assert low < d.mean() < high


def test_identical_runs_are_not_different():
    table = {f"q{i}": {"ndcg@10": v} for i, v in enumerate([0.1, 0.5, 1.0, 0.0, 0.7])}
    row = compare_per_query(table, table, "ndcg@10")
    assert (row.difference, row.ci_low, row.ci_high, row.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (row.better, row.worse, row.queries) == (0, 0, 5)


def test_a_consistent_gain_is_significant_and_a_noisy_one_is_not():
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 0.8, size=100)
    a = {f"q{i}": {"m": v} for i, v in enumerate(base)}
    steady = {f"q{i}": {"m": v + 0.05} for i, v in enumerate(base)}
    row = compare_per_query(a, steady, "m")
    assert row.difference == pytest.approx(0.05)
    assert row.p_value == pytest.approx(1 / 10_001)  # no sign vector reaches the observed mean
    assert row.ci_low == pytest.approx(0.05) and row.better == 100
    # the same mean gain, but 10 queries gain 0.5 and 90 move by noise: not significant
    swings = np.array([0.3] * 45 + [-0.3] * 45)
    rng.shuffle(swings)
    shifts = np.concatenate([np.full(10, 0.5), swings])
    noisy = {f"q{i}": {"m": v + s} for i, (v, s) in enumerate(zip(base, shifts))}
    row = compare_per_query(a, noisy, "m")
    assert row.difference == pytest.approx(0.05)
    assert row.p_value > 0.05 and row.ci_low < 0 < row.ci_high


def test_different_queries_are_refused():
    with pytest.raises(ValueError, match="different queries"):
        compare_per_query({"q1": {"m": 1.0}}, {"q2": {"m": 1.0}}, "m")


@pytest.mark.parametrize(
    "call",
    [lambda: randomization_p_value(np.array([])), lambda: bootstrap_interval(np.ones(3), 1.5),
     lambda: randomization_p_value(np.ones(3), resamples=0)],
)  # fmt: skip
def test_bad_arguments_are_refused(call):
    with pytest.raises(ValueError):
        call()
