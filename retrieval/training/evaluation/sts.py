"""Dev metric of a sentence-embedding model while it trains (kind pair): Spearman's rho of the
cosine similarities against the labels of at most ``max_queries`` seeded pairs of the split's
file (retrieval/evaluation/sts.py, reused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.evaluation import evaluate_sts, find_pair_file, read_sentence_pairs
from retrieval.evaluation.pair_files import SentencePairs
from retrieval.models.dual_encoder import DualEncoder


class StsEvaluator:
    def __init__(self, pairs: Path, settings):
        every = read_sentence_pairs(find_pair_file(pairs, settings.split))
        rows = np.arange(len(every))
        if len(every) > settings.max_queries:
            rng = np.random.default_rng(settings.seed)
            rows = np.sort(rng.choice(len(every), size=settings.max_queries, replace=False))
        self.pairs = SentencePairs(
            [every.sentences1[i] for i in rows],
            [every.sentences2[i] for i in rows],
            every.labels[rows],
            every.path,
        )

    def __call__(self, model: DualEncoder) -> dict[str, float]:
        metrics = evaluate_sts(model, self.pairs, show_progress=False)
        return {"spearman": metrics["spearman_cosine"], "pearson": metrics["pearson_cosine"]}
