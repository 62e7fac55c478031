"""Reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009) of several runs.

A cross-encoder trained on a few hundred queries can order the head of a list better than the
retriever yet be misled deeper down; fusing its ranks with the retriever's keeps the strengths of
both with no weight to tune, which is why RRF (k = 60, the paper's value) rather than a score
interpolation: scores of a retriever and a re-ranker live on different scales, ranks do not.
"""

from __future__ import annotations

from collections.abc import Sequence

from retrieval.metrics.evaluate import Run
from retrieval.metrics.order import trec_order

RRF_K = 60


def reciprocal_rank_fusion(runs: Sequence[Run], k: int = RRF_K) -> dict[str, dict[str, float]]:
    """score(q, d) = sum over runs of 1 / (k + rank of d for q), ranks from 1 in trec_eval's order.

    A document a run did not retrieve for q gets nothing from that run; a query absent from a run
    keeps the others' contributions.
    """
    if not runs:
        raise ValueError("reciprocal_rank_fusion: no runs to fuse")
    if k < 0:
        raise ValueError(f"reciprocal_rank_fusion: k must be >= 0, got {k}")
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid, scores in run.items():
            target = fused.setdefault(qid, {})
            for rank, pid in enumerate(trec_order(scores), start=1):
                target[pid] = target.get(pid, 0.0) + 1.0 / (k + rank)
    return fused
