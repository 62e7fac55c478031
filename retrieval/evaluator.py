"""Evaluate a dual encoder on prepared tables: encode, index, search, then score the run.

Works for any split that has qrels (MRR, Recall, nDCG, MAP) or answers (NQ answer recall).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from retrieval.encoding import encode_corpus
from retrieval.indexing import index_from_table
from retrieval.metrics import answer_recall, evaluate
from retrieval.models.dual_encoder import DualEncoder
from retrieval.retriever import Run, read_queries, search_queries, to_run
from retrieval.tables.labels import body_texts, check_labels, read_answers, read_qrels

logger = logging.getLogger(__name__)
DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


@dataclass
class RetrievalResult:
    metrics: dict[str, float]
    run: Run
    timings_s: dict[str, float] = field(default_factory=dict)


def evaluate_search(
    tables_dir: str | os.PathLike,
    split: str,
    qids: list[str],
    scores: np.ndarray,
    pids: list[list[str]],
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> RetrievalResult:
    """Score any retriever's search output (``[nq, k]`` scores, pids padded with "") on a split.

    Ranking metrics come from the split's qrels, answer recall@{1,5,20,100} (up to k) from its
    answers; whichever of the two the split has.
    """
    tables_dir = Path(tables_dir)
    has_qrels, has_answers = check_labels(tables_dir, split)
    run = to_run(qids, scores, pids)
    results: dict[str, float] = {}
    if has_qrels:
        results.update(evaluate(read_qrels(tables_dir / f"qrels-{split}"), run, metrics))
    if has_answers:
        ranked = {qid: [p for p in row if p] for qid, row in zip(qids, pids)}
        texts_by_pid = body_texts(tables_dir / "corpus", {p for row in pids for p in row if p})
        ks = tuple(x for x in (1, 5, 20, 100) if x <= scores.shape[1])
        answers = read_answers(tables_dir / f"answers-{split}")
        results.update(answer_recall(ranked, texts_by_pid, answers, ks))
    return RetrievalResult(results, run)


def evaluate_candidates(
    tables_dir: str | os.PathLike,
    split: str,
    candidates: pa.Table,
    k: int,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> RetrievalResult:
    """:func:`evaluate_search` of a candidates table (qid, pids, scores in rank order, at most
    ``k`` each), as the pipeline's search writes it."""
    qids = candidates["qid"].to_pylist()
    pids = [row + [""] * (k - len(row)) for row in candidates["pids"].to_pylist()]
    scores = np.full((len(qids), k), -np.inf, dtype=np.float32)
    for i, row in enumerate(candidates["scores"].to_pylist()):
        scores[i, : len(row)] = row
    return evaluate_search(tables_dir, split, qids, scores, pids, metrics)


def evaluate_retriever(
    model: DualEncoder,
    tables_dir: str | os.PathLike,
    split: str,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    k: int = 100,
    batch_size: int = 32,
    factory: str = "Flat",
    work_dir: str | os.PathLike | None = None,
    precision: str = "fp32",
    embeddings: str | os.PathLike | None = None,
) -> RetrievalResult:
    """Score ``model`` on ``tables_dir``'s ``queries-{split}`` against its ``corpus``.

    ``precision`` of encoding: fp32 (the default, exact) or bf16/auto (retrieval/precision.py).
    ``embeddings``: the corpus already encoded by this model (an embeddings table), reused.
    """
    tables_dir = Path(tables_dir)
    check_labels(tables_dir, split)  # fail before the costly encoding
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="rqa-eval-") as tmp:
        started = time.perf_counter()
        if embeddings is None:
            embeddings = Path(tmp) / "embeddings"
            encode_corpus(model, tables_dir / "corpus", embeddings, batch_size, precision=precision)
        timings["encode_corpus"] = time.perf_counter() - started
        index = index_from_table(embeddings, factory=factory)
    started = time.perf_counter()
    qids, texts = read_queries(tables_dir / f"queries-{split}")
    scores, pids = search_queries(model, qids, texts, index, k, precision=precision)
    timings["search"] = time.perf_counter() - started
    result = evaluate_search(tables_dir, split, qids, scores, pids, metrics)
    result.timings_s.update(timings)
    return result
