"""Dev metrics of a re-ranker while it trains (kind cross): a fixed list per sampled query,
re-scored at each evaluation. The lists are a candidates table's top ``depth`` when given
(a re-ranker's usual test: what the retriever found), else the query's positives plus seeded
draws from the dev pool up to ``depth`` passages; scored by retrieval/metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.metrics import evaluate
from retrieval.models.cross_encoder import CrossEncoder
from retrieval.rerank import score_pairs
from retrieval.training.evaluation.dev_set import (
    candidate_lists,
    corpus_sample,
    load_passages,
    sample_queries,
)
from retrieval.training.evaluation.retriever import metric_names


class RerankerEvaluator:
    def __init__(self, tables: Path, settings, metric: str):
        self.queries = sample_queries(tables, settings.split, settings.max_queries, settings.seed)
        qids = self.queries.qids
        if settings.candidates is not None:
            self.lists = candidate_lists(settings.candidates, qids, settings.depth)
        else:
            self.lists = self.drawn_lists(tables, settings)
        pids = [pid for qid in qids for pid in self.lists.get(qid, [])]
        self.passages = load_passages(tables / "corpus", pids)
        self.metrics = metric_names(metric)

    def drawn_lists(self, tables: Path, settings) -> dict[str, list[str]]:
        """Positives first, then draws from the pool without them, ``depth`` in all."""
        pool = corpus_sample(tables / "corpus", settings.pool_size, settings.seed)
        rng = np.random.default_rng(settings.seed)
        lists = {}
        for qid in self.queries.qids:
            positives = sorted(p for p, rel in self.queries.qrels[qid].items() if rel > 0)
            exclude = set(positives)
            others = [p for p in pool if p not in exclude]
            wanted = min(max(settings.depth - len(positives), 0), len(others))
            drawn = rng.choice(len(others), size=wanted, replace=False)
            lists[qid] = positives + [others[i] for i in sorted(drawn)]
        return lists

    def __call__(self, model: CrossEncoder) -> dict[str, float]:
        row = {pid: i for i, pid in enumerate(self.passages.pids)}
        pairs = [(q, pid) for q in self.queries.qids for pid in self.lists.get(q, [])]
        text = dict(zip(self.queries.qids, self.queries.texts))
        logits = score_pairs(
            model,
            [text[q] for q, _ in pairs],
            [self.passages.titles[row[p]] for _, p in pairs],
            [self.passages.texts[row[p]] for _, p in pairs],
            show_progress=False,
        )
        run: dict[str, dict[str, float]] = {}
        for (qid, pid), logit in zip(pairs, logits):
            run.setdefault(qid, {})[pid] = float(logit)
        return evaluate(self.queries.qrels, run, self.metrics)
