"""Dense retrieval end to end: encode queries, search an index, return runs and candidates.

The glue between models, encoding and indexing; it holds no metric and no file-format code.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from retrieval.encoding import encode_queries
from retrieval.indexing import FaissIndex
from retrieval.models.dual_encoder import DualEncoder
from retrieval.tables.schemas import CANDIDATES
from retrieval.tables.store import read_table

Run = dict[str, dict[str, float]]


def search_queries(
    model: DualEncoder,
    qids: list[str],
    texts: list[str],
    index: FaissIndex,
    k: int,
    batch_size: int = 128,
    show_progress: bool = True,
    precision: str = "fp32",
) -> tuple[np.ndarray, list[list[str]]]:
    """Top-``k`` scores ``[nq, k]`` and pids per query, in rank order (``precision``: how the
    queries are encoded, see retrieval/precision.py)."""
    if len(qids) != len(texts):
        raise ValueError(f"got {len(qids)} qids for {len(texts)} query texts")
    vectors = encode_queries(
        model, texts, batch_size=batch_size, show_progress=show_progress, precision=precision
    )
    return index.search(vectors, k)


def to_run(qids: list[str], scores: np.ndarray, pids: list[list[str]]) -> Run:
    """A pytrec_eval-style run, dropping the padding that marks missing results."""
    return {
        qid: {pid: float(s) for pid, s in zip(row_pids, row) if pid}
        for qid, row, row_pids in zip(qids, scores, pids)
    }


def to_candidates(qids: list[str], scores: np.ndarray, pids: list[list[str]]) -> pa.Table:
    """The ``candidates`` table (qid, pids, scores in rank order) of DESIGN's data contract."""
    keep = [[j for j, pid in enumerate(row) if pid] for row in pids]
    return pa.table(
        {
            "qid": qids,
            "pids": [[row[j] for j in cols] for row, cols in zip(pids, keep)],
            "scores": [scores[i, cols].astype(np.float32).tolist() for i, cols in enumerate(keep)],
        },
        schema=CANDIDATES,
    )


def read_queries(table_dir: str | os.PathLike) -> tuple[list[str], list[str]]:
    table = read_table(table_dir, columns=["qid", "text"])
    return table["qid"].to_pylist(), table["text"].to_pylist()
