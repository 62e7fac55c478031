"""Is run B better than run A, or is the difference noise? Paired tests over the same queries.

Holds the paired randomization test and the bootstrap interval on per-query metric values; which
queries and metrics are compared is ``per_query``'s business (evaluate.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
CHUNK = 1_000  # resamples drawn at once: 7k MS MARCO dev queries x 1k stay under 60 MB


@dataclass(frozen=True)
class PairedComparison:
    """One metric of run B against run A over the same ``queries``: the means, their difference
    (B - A), its ``confidence`` bootstrap interval, the two-sided randomization p-value, and
    how many queries B scores higher and lower than A."""

    metric: str
    queries: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    better: int
    worse: int
    confidence: float

    def cells(self) -> str:
        """The figures as Markdown table cells, from the means to better / worse."""
        return (
            f"{self.mean_a:.4f} | {self.mean_b:.4f} | {self.difference:+.4f} | "
            f"[{self.ci_low:+.4f}, {self.ci_high:+.4f}] | {self.p_value:.3f} | "
            f"{self.better} / {self.worse}"
        )


def randomization_p_value(
    differences: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> float:
    """Two-sided paired randomization test (Fisher; Smucker et al., CIKM 2007) of mean 0.

    Under the null hypothesis each query's two scores are exchangeable, so each difference's
    sign is a coin flip. ``p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + resamples)`` over
    random sign vectors ``s``: the +1 counts the observed labelling, so p is never 0.
    """
    d = _differences(differences)
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    extreme = 0
    for size in _chunks(resamples):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, len(d)))
        # a relative tolerance: sums in another order must not turn a tie into a miss
        extreme += int((np.abs(signs @ d / len(d)) >= observed * (1 - 1e-12)).sum())
    return (1 + extreme) / (1 + resamples)


def bootstrap_interval(
    differences: np.ndarray, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference: queries drawn with replacement,
    pairs kept together (Sakai, SIGIR 2006)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = _differences(differences)
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            d[rng.integers(0, len(d), size=(size, len(d)))].mean(axis=1)
            for size in _chunks(resamples)
        ]
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def compare_per_query(
    a: Mapping[str, Mapping[str, float]],
    b: Mapping[str, Mapping[str, float]],
    metric: str,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """``metric`` of B against A from two ``per_query`` tables of the same qrels."""
    if a.keys() != b.keys():
        raise ValueError(
            f"the two runs are scored on different queries ({len(a)} and {len(b)}): "
            "compare per-query tables of the same qrels"
        )
    qids = sorted(a)
    x = np.array([a[q][metric] for q in qids], dtype=np.float64)
    y = np.array([b[q][metric] for q in qids], dtype=np.float64)
    d = y - x
    low, high = bootstrap_interval(d, confidence, resamples, seed)
    return PairedComparison(
        metric=metric,
        queries=len(qids),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        difference=float(d.mean()),
        ci_low=low,
        ci_high=high,
        p_value=randomization_p_value(d, resamples, seed),
        better=int((d > 0).sum()),
        worse=int((d < 0).sum()),
        confidence=confidence,
    )


def _differences(differences: np.ndarray) -> np.ndarray:
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"expected a non-empty 1-D array of per-query differences, got {d.shape}")
    return d


def _chunks(resamples: int) -> list[int]:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    full, rest = divmod(resamples, CHUNK)
    return [CHUNK] * full + ([rest] if rest else [])
