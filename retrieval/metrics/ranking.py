"""Per-query ranking measures (MRR, recall, precision, nDCG, AP) as trec_eval defines them.

Holds one query's formulas only; averaging over queries and metric names live in evaluate.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from retrieval.metrics.order import relevant_ranks


@dataclass(frozen=True)
class Hits:
    """All a measure needs about one query: where its relevant docs were ranked.

    ``ranks``: ranks (from 1, ascending) of the retrieved docs with relevance > 0.
    ``gains``: the relevance of those docs, parallel to ``ranks``.
    ``ideal``: the relevance of every judged doc with relevance > 0, retrieved or not, descending.
    """

    ranks: tuple[int, ...]
    gains: tuple[int, ...]
    ideal: tuple[int, ...]

    @classmethod
    def from_scores(cls, scores: Mapping[str, float], relevances: Mapping[str, int]) -> Hits:
        """From a run ``{pid: score}`` ranked in trec_eval order and qrels ``{pid: relevance}``."""
        found = relevant_ranks(scores, relevances)
        return cls(
            ranks=tuple(rank for rank, _ in found),
            gains=tuple(rel for _, rel in found),
            ideal=_ideal(relevances),
        )

    @classmethod
    def from_ranking(cls, ranking: Sequence[str], relevances: Mapping[str, int]) -> Hits:
        """From doc ids already ranked best first (duplicates after the first are ignored)."""
        seen: set[str] = set()
        ranks: list[int] = []
        gains: list[int] = []
        for rank, pid in enumerate(ranking, start=1):
            if pid in seen:
                continue
            seen.add(pid)
            rel = relevances.get(pid, 0)
            if rel > 0:
                ranks.append(rank)
                gains.append(rel)
        return cls(ranks=tuple(ranks), gains=tuple(gains), ideal=_ideal(relevances))

    @property
    def num_relevant(self) -> int:
        """R: the number of judged docs with relevance > 0."""
        return len(self.ideal)


def mrr_at_k(hits: Hits, k: int) -> float:
    """Reciprocal rank cut at k: RR@k = 1 / rank of the first relevant doc if rank <= k, else 0.

    Averaged over queries this is MRR@k (MS MARCO's MRR@10).
    """
    _check_k(k)
    return 1.0 / hits.ranks[0] if hits.ranks and hits.ranks[0] <= k else 0.0


def recall_at_k(hits: Hits, k: int) -> float:
    """Recall@k = |relevant docs in the top k| / R, R = all judged relevant docs (0 when R = 0)."""
    _check_k(k)
    if not hits.ideal:
        return 0.0
    return _count_within(hits, k) / hits.num_relevant


def precision_at_k(hits: Hits, k: int) -> float:
    """P@k = |relevant docs in the top k| / k (k, not the number retrieved, as trec_eval's P_k)."""
    _check_k(k)
    return _count_within(hits, k) / k


def ndcg_at_k(hits: Hits, k: int) -> float:
    """nDCG@k = DCG@k / IDCG@k with DCG@k = sum_{rank i <= k} rel_i / log2(i + 1).

    Gain is the relevance itself (docs with relevance <= 0 gain 0); IDCG@k is the DCG@k of the
    judged relevant docs sorted by relevance descending, as trec_eval's ndcg_cut. 0 when R = 0.
    """
    _check_k(k)
    if not hits.ideal:
        return 0.0
    dcg = sum(g / math.log2(r + 1) for r, g in zip(hits.ranks, hits.gains) if r <= k)
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(hits.ideal[:k]))
    return dcg / idcg


def average_precision(hits: Hits, k: int | None = None) -> float:
    """AP@k = (1 / R) * sum over relevant docs at rank r <= k of P@r; k = None means no cut.

    R counts all judged relevant docs, retrieved or not (trec_eval's map and map_cut). 0 when R = 0.
    """
    if k is not None:
        _check_k(k)
    if not hits.ideal:
        return 0.0
    total = 0.0
    for found, rank in enumerate(hits.ranks, start=1):
        if k is not None and rank > k:
            break
        total += found / rank
    return total / hits.num_relevant


def _count_within(hits: Hits, k: int) -> int:
    count = 0
    for rank in hits.ranks:
        if rank > k:
            break
        count += 1
    return count


def _ideal(relevances: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(sorted((rel for rel in relevances.values() if rel > 0), reverse=True))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"cut-off k must be a positive integer, got {k}")
