"""Dev metrics of a dual encoder while it trains (kinds dual and joint): the sampled queries
ranked against the dev pool (dev_set.py) by the model's own similarity, scored by
retrieval/metrics against the split's qrels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from retrieval.encoding import encode_passages, encode_queries
from retrieval.metrics import evaluate
from retrieval.models.dual_encoder import DualEncoder
from retrieval.training.evaluation.dev_set import (
    DevQueries,
    Passages,
    candidate_lists,
    corpus_sample,
    load_passages,
    sample_queries,
)

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def metric_names(selected: str) -> tuple[str, ...]:
    """The metrics logged: the usual four and the one ``select`` reads."""
    return tuple(dict.fromkeys((*METRICS, selected)))


def deepest_cut(metrics: tuple[str, ...]) -> int:
    """How many passages each query's run must hold for every metric (``map``: 1000)."""
    return max(int(name.split("@")[1]) if "@" in name else 1000 for name in metrics)


class RetrieverEvaluator:
    """Loads the dev queries and pool once; each call encodes them and ranks the pool."""

    def __init__(self, tables: Path, settings, metric: str):
        self.queries: DevQueries = sample_queries(
            tables, settings.split, settings.max_queries, settings.seed
        )
        pool = sorted(self.queries.positives())
        if settings.candidates is not None:
            lists = candidate_lists(settings.candidates, self.queries.qids, settings.depth)
            pool += [pid for qid in self.queries.qids for pid in lists.get(qid, [])]
        else:
            pool += corpus_sample(tables / "corpus", settings.pool_size, settings.seed)
        self.pool: Passages = load_passages(tables / "corpus", pool)
        self.metrics = metric_names(metric)

    def __call__(self, model: DualEncoder) -> dict[str, float]:
        queries = encode_queries(model, self.queries.texts, show_progress=False)
        passages = encode_passages(model, self.pool.titles, self.pool.texts, show_progress=False)
        scores = model.score(torch.from_numpy(queries), torch.from_numpy(passages)).numpy()
        return evaluate(self.queries.qrels, self.run(scores), self.metrics)

    def run(self, scores: np.ndarray) -> dict[str, dict[str, float]]:
        """Each query's top passages of the pool (as many as the deepest metric reads)."""
        depth = min(deepest_cut(self.metrics), scores.shape[1])
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        return {
            qid: {self.pool.pids[j]: float(scores[i, j]) for j in top[i]}
            for i, qid in enumerate(self.queries.qids)
        }
