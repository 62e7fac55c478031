"""The inference workers: each loads its model once, on its device, then turns one table slice
(``{"path", "start", "rows"}``, see pool.table_slices) a call into a result table.

The same classes run as Ray Data actors and, with ``actors: 0``, in the driver process. On a GPU
(``gpu=True``) the model moves to CUDA and ``auto`` precision becomes bf16 on Ampere and later.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from retrieval.encoding import embeddings_table, encode_passages, encode_queries
from retrieval.models import CrossEncoder, DualEncoder
from retrieval.precision import resolve_precision
from retrieval.rerank import check_found, score_pairs
from retrieval.tables.passage_lookup import PassageLookup, QueryLookup
from retrieval.tables.schemas import CANDIDATES

logger = logging.getLogger(__name__)
QUERY_VECTORS = "qid"  # query vectors tables: (qid, vector), the embeddings layout keyed by qid


def read_slice(batch: dict, columns: list[str]) -> pa.Table:
    """The rows of one slice (a batch of one item, as Ray Data or run_workers passes it)."""
    path, start, rows = (batch[key][0] for key in ("path", "start", "rows"))
    return pq.read_table(str(path), columns=columns).slice(int(start), int(rows))


def place(model: torch.nn.Module, gpu: bool, cpus: float | None, precision: str):
    """``model`` on its device in eval mode, and the precision it will run in there.

    ``cpus``: the CPUs a Ray actor reserved; Ray leaves an actor's torch at one thread, so it
    gets that many. None (a worker in the driver, ``actors: 0``) leaves the process's threads
    as they are: the driver has the machine, and the setting would outlive the stage."""
    if cpus is not None:
        torch.set_num_threads(max(1, int(cpus)))
    if gpu and not torch.cuda.is_available():  # Ray schedules the GPUs a node declares
        logger.warning("a GPU was reserved but CUDA sees none here: running on the CPU")
        gpu = False
    device = torch.device("cuda" if gpu else "cpu")
    return model.to(device).eval(), resolve_precision(precision, device)


class CorpusEncoder:
    """Corpus slice (pid, title, text) -> embeddings table (pid, vector)."""

    def __init__(self, model_dir, batch_size, precision, dtype, overrides, *, gpu=False, cpus=None):
        model = DualEncoder.from_pretrained(str(model_dir), **overrides)
        self.model, self.precision = place(model, gpu, cpus, precision)
        self.batch_size, self.dtype = batch_size, dtype

    def __call__(self, batch: dict) -> pa.Table:
        rows = read_slice(batch, ["pid", "title", "text"])
        vectors = encode_passages(
            self.model, rows["title"].to_pylist(), rows["text"].to_pylist(), self.batch_size,
            show_progress=False, precision=self.precision,
        )  # fmt: skip
        return embeddings_table(rows["pid"], np.asarray(vectors), self.dtype)


class QueryEncoder:
    """Queries slice (qid, text) -> query vectors (qid, vector), float32."""

    def __init__(self, model_dir, batch_size, precision, overrides, *, gpu=False, cpus=None):
        model = DualEncoder.from_pretrained(str(model_dir), **overrides)
        self.model, self.precision = place(model, gpu, cpus, precision)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> pa.Table:
        rows = read_slice(batch, ["qid", "text"])
        vectors = encode_queries(
            self.model, rows["text"].to_pylist(), self.batch_size, show_progress=False,
            precision=self.precision,
        )  # fmt: skip
        table = embeddings_table(rows["qid"], np.asarray(vectors), "float32")
        return table.rename_columns([QUERY_VECTORS, "vector"])


class PairScorer:
    """Lists slice (qid + list columns of pids) -> (qid, pids, scores): the cross-encoder logit
    of each (query, passage) pair, the pids being the columns' lists joined without repeats (the
    first ``depth`` of each), in their order. Query and passage texts are looked up by id
    (retrieval/tables/passage_lookup.py: the corpus memory-mapped, cached in ``cache_dir``,
    and only this slice's rows read)."""

    def __init__(
        self, model_dir, corpus_dir, queries_dir, columns, depth, batch_size, precision,
        cache_dir, *, gpu=False, cpus=None,
    ):  # fmt: skip
        model = CrossEncoder.from_pretrained(str(model_dir))
        self.model, self.precision = place(model, gpu, cpus, precision)
        self.corpus, self.queries = str(corpus_dir), str(queries_dir)
        self.passages_of = PassageLookup(corpus_dir, cache_dir)
        self.queries_of = QueryLookup(queries_dir)
        self.columns, self.depth, self.batch_size = list(columns), depth, batch_size

    def __call__(self, batch: dict) -> pa.Table:
        rows = read_slice(batch, ["qid", *self.columns])
        qids = rows["qid"].to_pylist()
        columns = [rows[c].to_pylist() for c in self.columns]
        lists = [
            list(dict.fromkeys(p for col in row for p in (col or [])[: self.depth] if p))
            for row in zip(*columns)
        ]
        queries = self.queries_of(qids)
        passages = self.passages_of(p for row in lists for p in row)
        check_found(self.queries, "qid", qids, queries)
        check_found(self.corpus, "pid", [p for row in lists for p in row], passages)
        pairs = [(queries[q], passages[p]) for q, row in zip(qids, lists) for p in row]
        logits = score_pairs(
            self.model, [q for q, _ in pairs], [p[0] for _, p in pairs], [p[1] for _, p in pairs],
            batch_size=self.batch_size, show_progress=False, precision=self.precision,
        )  # fmt: skip
        ends = np.cumsum([len(row) for row in lists])
        scores = [part.tolist() for part in np.split(logits, ends[:-1])] if lists else []
        return pa.table({"qid": qids, "pids": lists, "scores": scores}, schema=CANDIDATES)
