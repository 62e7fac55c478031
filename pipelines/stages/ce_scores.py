"""Cross-encoder probabilities for lists of (query, passage) pairs, used to denoise mined
negatives and to pseudo-label augmented queries. sigmoid(logit) is a probability only for a
re-ranker trained pointwise (BCE, as RocketQA does); thresholds assume that."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from retrieval.models import CrossEncoder
from retrieval.rerank import rerank
from retrieval.tables.schemas import CANDIDATES


def ce_probabilities(
    model_dir: Path,
    lists: dict[str, list[str]],
    corpus_dir: Path,
    queries_dir: Path,
    batch_size: int,
) -> dict[str, dict[str, float]]:
    """qid -> pid -> P(relevant) for every pid in ``lists`` (queries read from a table)."""
    model = CrossEncoder.from_pretrained(model_dir)
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
    scored = rerank(model, table, corpus_dir, queries_dir, depth, batch_size=batch_size)
    out: dict[str, dict[str, float]] = {}
    for qid, pids, logits in zip(*(scored[c].to_pylist() for c in ("qid", "pids", "scores"))):
        probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
        out[qid] = dict(zip(pids, probs.tolist()))
    return out
