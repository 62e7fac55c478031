"""Retrieval metrics: trec_eval-compatible ranking measures, DPR answer recall, TREC run files.

Holds only pure-Python scoring and file formats; no models, indexes or pipeline code.
"""

from retrieval.metrics.answers import answer_recall, has_answer, tokenize
from retrieval.metrics.evaluate import DEFAULT_METRICS, evaluate, parse_metric, per_query
from retrieval.metrics.order import relevant_ranks, trec_order
from retrieval.metrics.ranking import (
    Hits,
    average_precision,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from retrieval.metrics.trec_run import (
    read_trec_qrels,
    read_trec_run,
    write_trec_qrels,
    write_trec_run,
)

__all__ = [
    "DEFAULT_METRICS",
    "Hits",
    "answer_recall",
    "average_precision",
    "evaluate",
    "has_answer",
    "mrr_at_k",
    "ndcg_at_k",
    "parse_metric",
    "per_query",
    "precision_at_k",
    "read_trec_qrels",
    "read_trec_run",
    "recall_at_k",
    "relevant_ranks",
    "tokenize",
    "trec_order",
    "write_trec_qrels",
    "write_trec_run",
]
