"""Score a run against qrels by metric name ("ndcg@10", "map", ...), per query and averaged.

Holds name parsing and query bookkeeping; the per-query formulas stay in ranking.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from retrieval.errors import ConfigError
from retrieval.metrics.ranking import (
    Hits,
    average_precision,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]
Measure = Callable[[Hits], float]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
VALID_FORMS = "'ndcg@K', 'mrr@K', 'recall@K', 'precision@K', 'map', 'map@K' (K a positive integer)"

_CUT_MEASURES: dict[str, Callable[[Hits, int], float]] = {
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "map": average_precision,
}
_NAME = re.compile(r"(?P<measure>[a-z]+)(?:@(?P<k>[1-9][0-9]*))?")


def parse_metric(name: str) -> Measure:
    """The per-query function for a metric name; ValueError naming the valid forms if unknown."""
    match = _NAME.fullmatch(name)
    if match is not None:
        measure, k = match["measure"], match["k"]
        if measure == "map" and k is None:
            return average_precision
        if measure in _CUT_MEASURES and k is not None:
            return partial(_CUT_MEASURES[measure], k=int(k))
    raise ConfigError(f"unknown metric {name!r}; valid forms: {VALID_FORMS}")


def per_query(
    qrels: Qrels,
    run: Run,
    metrics: Sequence[str] = DEFAULT_METRICS,
    ignore_identical_ids: bool = True,
) -> dict[str, dict[str, float]]:
    """``{qid: {metric: value}}`` for every query in qrels with at least one doc of relevance > 0.

    Queries absent from the run score 0 on every metric (trec_eval ``-c``); queries in the run
    but not in qrels, or with no relevant doc, are left out. Note that BEIR instead averages
    over the queries present in both qrels and run, so the two differ when a run omits queries.
    With ``ignore_identical_ids`` (BEIR's default), run entries whose pid equals the qid are
    dropped before ranking (the qrels are left as they are).
    """
    measures = {name: parse_metric(name) for name in metrics}
    empty: dict[str, float] = {}
    results: dict[str, dict[str, float]] = {}
    for qid, relevances in qrels.items():
        if not any(rel > 0 for rel in relevances.values()):
            continue
        scores = run.get(qid, empty)
        if ignore_identical_ids and qid in scores:
            scores = {pid: score for pid, score in scores.items() if pid != qid}
        hits = Hits.from_scores(scores, relevances)
        results[qid] = {name: measure(hits) for name, measure in measures.items()}
    return results


def evaluate(
    qrels: Qrels,
    run: Run,
    metrics: Sequence[str] = DEFAULT_METRICS,
    ignore_identical_ids: bool = True,
) -> dict[str, float]:
    """``{metric: mean over queries}``, the queries and rules being those of ``per_query``.

    Raises ValueError if no query in qrels has a relevant doc (the mean would be undefined).
    """
    table = per_query(qrels, run, metrics, ignore_identical_ids)
    if not table:
        raise ValueError("no query in qrels has a document with relevance > 0")
    names = dict.fromkeys(metrics)
    return {name: sum(row[name] for row in table.values()) / len(table) for name in names}
