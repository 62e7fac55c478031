"""Positive-aware mining (NV-Retriever, Moreira et al. 2024, "TopK-PercPos" / "TopK-MarginPos"):
a mined passage the retriever scores almost as high as the query's positive is likely a false
negative, so only those scored clearly below the positive are kept; a cheap, re-ranker-free
alternative to (or first pass before) the cross-encoder's denoising.

Holds the rule on one query's ranked list; the positive's score comes from the caller (the
candidates table, or query . passage vectors for a positive the search missed:
pipelines/stages/positive_scores.py). It must not read tables itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipelines.config import PositiveAwareRule


def score_bound(rule: PositiveAwareRule, positive_score: float) -> float:
    """The score a kept negative must stay below. The ratio bound is also capped at the
    positive's own score: for a positive scored <= 0, ``max_ratio`` x it would lie above it and
    keep negatives the retriever ranks over the positive."""
    bound = math.inf
    if rule.max_ratio is not None:
        bound = min(bound, rule.max_ratio * positive_score, positive_score)
    if rule.margin is not None:
        bound = min(bound, positive_score - rule.margin)
    return bound


def positive_aware_negatives(
    pids: Sequence[str],
    scores: Sequence[float],
    positives: Sequence[str],
    positive_score: float | None,
    rule: PositiveAwareRule,
) -> list[str]:
    """The non-positive ``pids`` (in rank order, ``scores`` theirs) the rule keeps.
    ``positive_score``: the lowest score of the query's positives (None only when the rule
    needs none)."""
    judged = set(positives)
    ranked = [(p, s) for p, s in zip(pids, scores, strict=True) if p not in judged]
    ranked = ranked[rule.range_min :]
    if not rule.needs_scores():
        return [p for p, _ in ranked]
    if positive_score is None:
        raise ValueError("positive-aware mining needs the positive's score")
    bound = score_bound(rule, positive_score)
    return [p for p, s in ranked if s < bound]


@dataclass
class PositiveAware:
    """The rule, with the scores of the positives the lists do not hold (``(qid, pid) ->
    query . passage``), so each query's positive score is known."""

    rule: PositiveAwareRule
    unlisted: dict[tuple[str, str], float] = field(default_factory=dict)

    def positive_score(self, qid: str, positives: Sequence[str], listed: dict[str, float]):
        """The lowest score of the query's positives: a negative must stay below every known
        relevant passage to count as clearly worse (as denoise's ``relative`` mode reads the
        lowest-scoring positive). A listed positive takes its score from the list."""
        if not self.rule.needs_scores() or not positives:
            return None
        found = [listed[p] if p in listed else self.unlisted[(qid, p)] for p in positives]
        return min(found)

    def negatives(self, row: dict, pids: Sequence[str], scores: Sequence[float]) -> list[str]:
        """One example's kept negatives from its ranked list."""
        listed = dict(zip(pids, scores))
        score = self.positive_score(row["qid"], row["positives"], listed)
        return positive_aware_negatives(pids, scores, row["positives"], score, self.rule)
