"""Cross-encoder logits for lists of (query, passage) pairs, used to denoise mined negatives and
to pseudo-label augmented queries.

sigmoid(logit) is a probability only for a re-ranker trained pointwise (BCE, as RocketQA does),
and only once it is well trained; the ``relative`` modes of denoise and augment compare logits
within a query instead, which needs no calibration.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from retrieval.models import CrossEncoder
from retrieval.rerank import rerank
from retrieval.tables.schemas import CANDIDATES


def ce_logits(
    model: CrossEncoder | Path,
    lists: dict[str, list[str]],
    corpus_dir: Path,
    queries_dir: Path,
    batch_size: int,
    precision: str = "fp32",
) -> dict[str, dict[str, float]]:
    """qid -> pid -> re-ranker logit for every pid in ``lists`` (queries read from a table);
    ``model`` loaded, or its folder."""
    if not isinstance(model, CrossEncoder):
        model = CrossEncoder.from_pretrained(model)
    qids = [q for q, pids in lists.items() if pids]
    table = pa.table(
        {
            "qid": qids,
            "pids": [lists[q] for q in qids],
            "scores": [[0.0] * len(lists[q]) for q in qids],
        },
        schema=CANDIDATES,
    )
    depth = max((len(lists[q]) for q in qids), default=1)
    scored = rerank(
        model, table, corpus_dir, queries_dir, depth, batch_size=batch_size, precision=precision
    )
    return {
        qid: dict(zip(pids, logits))
        for qid, pids, logits in zip(*(scored[c].to_pylist() for c in ("qid", "pids", "scores")))
    }


def sigmoid(logit: float) -> float:
    """P(relevant) of a pointwise re-ranker's logit, without overflow for large |logit|."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)
