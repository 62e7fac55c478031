"""Cross-encoder re-ranking: score (query, passage) pairs in length-sorted batches, re-order lists.

Works on CANDIDATES tables; passages and queries are looked up by id, a chunk of queries at a
time, so memory follows the chunk and not the corpus. Holds no training code.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from retrieval.metrics.order import trec_order
from retrieval.models.cross_encoder import CrossEncoder
from retrieval.models.dual_encoder import passage_text
from retrieval.precision import bf16_copy, resolve_precision
from retrieval.retriever import Run
from retrieval.tables.errors import DataError
from retrieval.tables.lookup import passages_of, queries_of
from retrieval.tables.schemas import CANDIDATES

DEFAULT_CHUNK_QUERIES = 20_000


def score_pairs(
    model: CrossEncoder,
    queries: list[str],
    titles: list[str | None],
    texts: list[str],
    batch_size: int = 32,
    show_progress: bool = True,
    precision: str = "fp32",
) -> np.ndarray:
    """Cross-encoder logits (float32 ``[n]``) of each (query, title + text) pair, input order.

    Pairs are tokenized once as ``CrossEncoder.tokenize`` does, then run longest first in
    batches padded to their own longest pair, so short pairs do not pay for long ones.
    ``precision``: fp32 (exact), bf16 or auto, as in retrieval/precision.py.
    """
    if not len(queries) == len(titles) == len(texts):
        raise ValueError(f"got {len(queries)} queries, {len(titles)} titles, {len(texts)} texts")
    out = np.empty(len(queries), dtype=np.float32)
    if not queries:
        return out
    tokenizer = model.tokenizer
    passages = [passage_text(a, b) for a, b in zip(titles, texts)]
    # the same arguments as CrossEncoder.tokenize, without padding: each batch pads its own
    encoded = tokenizer(
        queries, passages, truncation="longest_first", max_length=model.settings.max_len
    )
    order = np.argsort([-len(ids) for ids in encoded["input_ids"]], kind="stable")
    device = next(model.parameters()).device
    model = _scorer(model, precision)
    model.eval()
    with (
        torch.inference_mode(),
        tqdm(total=len(order), desc="cross-encoder", disable=not show_progress) as bar,
    ):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer.pad(
                {key: [values[i] for i in rows] for key, values in encoded.items()},
                return_tensors="pt",
            )
            logits = model({key: value.to(device) for key, value in batch.items()})
            out[rows] = logits.float().cpu().numpy()
            bar.update(len(rows))
    return out


def _scorer(model: CrossEncoder, precision: str) -> CrossEncoder:
    """``model`` itself for fp32 (or a model already in bf16), else a bf16 copy of it."""
    device = next(model.parameters()).device
    if resolve_precision(precision, device) == "fp32":
        return model
    return model if next(model.parameters()).dtype == torch.bfloat16 else bf16_copy(model)


def rerank(
    model: CrossEncoder,
    candidates: pa.Table,
    corpus_dir: str | os.PathLike,
    queries_dir: str | os.PathLike,
    depth: int,
    batch_size: int = 32,
    show_progress: bool = True,
    chunk_queries: int = DEFAULT_CHUNK_QUERIES,
    precision: str = "fp32",
) -> pa.Table:
    """Each query's top ``depth`` candidates re-ordered by cross-encoder logit (the new scores).

    Candidates below ``depth`` are dropped; ties in logit keep the incoming order. Queries and
    passages are read ``chunk_queries`` queries at a time. ``precision`` as for score_pairs.
    """
    if depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    model = _scorer(model, precision)  # one bf16 copy for all chunks
    candidates = candidates.select(["qid", "pids"])
    total_pairs = sum(min(len(row), depth) for row in candidates["pids"].to_pylist())
    pieces = []
    with tqdm(total=total_pairs, desc="rerank", disable=not show_progress) as bar:
        for start in range(0, candidates.num_rows, chunk_queries):
            chunk = candidates.slice(start, chunk_queries)
            pieces.append(_rerank_chunk(model, chunk, corpus_dir, queries_dir, depth, batch_size))
            bar.update(sum(len(row) for row in pieces[-1]["pids"].to_pylist()))
    if not pieces:
        return CANDIDATES.empty_table()
    return pa.concat_tables(pieces)


def _rerank_chunk(
    model: CrossEncoder,
    chunk: pa.Table,
    corpus_dir: str | os.PathLike,
    queries_dir: str | os.PathLike,
    depth: int,
    batch_size: int,
) -> pa.Table:
    qids = chunk["qid"].to_pylist()
    lists = [row[:depth] for row in chunk["pids"].to_pylist()]
    query_text = queries_of(queries_dir, qids)
    passages = passages_of(corpus_dir, {pid for row in lists for pid in row})
    check_found(queries_dir, "qid", qids, query_text)
    check_found(corpus_dir, "pid", [pid for row in lists for pid in row], passages)
    flat_pids = [pid for row in lists for pid in row]
    logits = score_pairs(
        model,
        [query_text[qid] for qid, row in zip(qids, lists) for _ in row],
        [passages[pid][0] for pid in flat_pids],
        [passages[pid][1] for pid in flat_pids],
        batch_size=batch_size,
        show_progress=False,
    )
    ranked_pids, ranked_scores = [], []
    start = 0
    for row in lists:
        row_logits = logits[start : start + len(row)]
        start += len(row)
        order = np.argsort(-row_logits, kind="stable")
        ranked_pids.append([row[j] for j in order])
        ranked_scores.append(row_logits[order].tolist())
    return pa.table({"qid": qids, "pids": ranked_pids, "scores": ranked_scores}, schema=CANDIDATES)


def check_found(table_dir: str | os.PathLike, key: str, ids: list[str], found: dict) -> None:
    missing = sorted({i for i in ids if i not in found})
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(table_dir, f"{len(missing)} {key}s not in the table: {shown}", field=key)


def candidates_to_run(table: pa.Table) -> Run:
    """A pytrec_eval-style run ``{qid: {pid: score}}`` from a CANDIDATES table."""
    return {
        qid: dict(zip(pids, map(float, scores)))
        for qid, pids, scores in zip(
            table["qid"].to_pylist(), table["pids"].to_pylist(), table["scores"].to_pylist()
        )
    }


def top_of_run(run: Run, depth: int) -> Run:
    """Each query's top ``depth`` documents of a run, in trec_eval's order, with their scores."""
    return {qid: {pid: run[qid][pid] for pid in trec_order(run[qid])[:depth]} for qid in run}


def rerank_top(
    model: CrossEncoder,
    top: Run,
    corpus_dir: str | os.PathLike,
    queries_dir: str | os.PathLike,
    batch_size: int = 32,
    precision: str = "fp32",
) -> Run:
    """The cross-encoder's logits for every (query, document) of ``top``, as a run: what
    `rqa rerank` writes and the evaluate stage reports."""
    qids = list(top)
    candidates = pa.table(
        {
            "qid": qids,
            "pids": [list(top[q]) for q in qids],
            "scores": [[float(x) for x in top[q].values()] for q in qids],
        },
        schema=CANDIDATES,
    )
    depth = max((len(top[q]) for q in qids), default=1)
    reranked = rerank(
        model, candidates, corpus_dir, queries_dir, depth, batch_size=batch_size,
        precision=precision,
    )  # fmt: skip
    return candidates_to_run(reranked)
