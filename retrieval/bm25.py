"""BM25 over a corpus table, on the bm25s library: the sparse baseline and DPR-style negatives.

Holds tokenization settings, top-k selection, saving, mining and evaluation; the BM25 formula
itself is bm25s's (method "lucene": Lucene >= 8, which drops the constant ``k1 + 1`` factor).
Search runs in query chunks, through bm25s's batch retrieve on every core when numba is
installed (bm25s's numba backend), else one query at a time; both give the same lists.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# bm25s runs one JAX top-k when it is imported, if JAX is installed; JAX then takes 75% of
# every GPU this process sees, so training workers and GPU actors on the node run out of
# memory. RQA never uses JAX: keep it on the CPU (a user's own JAX_PLATFORMS wins).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import bm25s  # noqa: E402
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import Stemmer
from tqdm.auto import tqdm

from retrieval.bm25_kernel_cache import cache_bm25s_kernels
from retrieval.evaluator import DEFAULT_METRICS, RetrievalResult, evaluate_search
from retrieval.indexing.vectors import check_k
from retrieval.models.dual_encoder import passage_text
from retrieval.retriever import read_queries, to_candidates
from retrieval.tables.errors import DataError
from retrieval.tables.labels import check_labels, read_qrels
from retrieval.tables.store import atomic_dir, iter_shards, write_json_atomic

logger = logging.getLogger(__name__)
SETTINGS_FILE = "rqa_bm25.json"
PIDS_FILE = "pids.parquet"
DEFAULT_CHUNK_QUERIES = 4096  # queries searched at once: bounds the top lists held at a time

cache_bm25s_kernels()  # each process after the first loads bm25s's numba kernels, 8 s sooner


@dataclass
class BM25Settings:
    """BM25 parameters and text processing (defaults: Anserini's k1 0.9, b 0.4 for BEIR)."""

    k1: float = 0.9
    b: float = 0.4
    method: str = "lucene"
    stopwords: str = "en"
    stemmer: str = "english"  # a Snowball language of PyStemmer; "" for no stemming


class BM25Retriever:
    """A bm25s index over a corpus plus the pid of each of its rows."""

    def __init__(self, index: bm25s.BM25, pids: pa.Array, settings: BM25Settings):
        if index.scores["num_docs"] != len(pids):
            raise ValueError(f"index has {index.scores['num_docs']} docs but {len(pids)} pids")
        self.index = index
        self.pids = pids
        self.settings = settings
        self._lookup = pa.concat_arrays([pids, pa.array([""], type=pa.string())])

    def __len__(self) -> int:
        return len(self.pids)

    @classmethod
    def build(
        cls,
        corpus_dir: str | os.PathLike,
        settings: BM25Settings | None = None,
        show_progress: bool = True,
    ) -> BM25Retriever:
        """Index a corpus table (title + " " + text per passage), reading it shard by shard."""
        settings = settings or BM25Settings()
        stemmer = _stemmer(settings)
        tokenizer = bm25s.tokenization.Tokenizer(
            stopwords=settings.stopwords, stemmer=stemmer.stemWord if stemmer else None
        )
        token_ids: list[list[int]] = []
        pid_chunks: list[pa.Array] = []
        for shard in tqdm(
            iter_shards(corpus_dir, columns=["pid", "title", "text"]),
            desc="bm25 tokenize corpus shards",
            disable=not show_progress,
        ):
            titles, bodies = shard["title"].to_pylist(), shard["text"].to_pylist()
            texts = [passage_text(a, b) for a, b in zip(titles, bodies)]
            # allow_empty=False: an empty passage has no tokens, not a made-up "" token
            token_ids.extend(
                tokenizer.tokenize(texts, update_vocab=True, show_progress=False, allow_empty=False)
            )
            pid_chunks.extend(shard["pid"].chunks)
        if not tokenizer.get_vocab_dict():
            raise DataError(corpus_dir, "no passage has any indexable token")
        # backend "auto": numba (fast batch retrieve on every core) when installed, else numpy
        index = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method, backend="auto")
        corpus = bm25s.tokenization.Tokenized(ids=token_ids, vocab=tokenizer.get_vocab_dict())
        index.index(corpus, create_empty_token=False, show_progress=show_progress)
        pids = pa.concat_arrays(pid_chunks) if pid_chunks else pa.array([], type=pa.string())
        return cls(index, pids, settings)

    def query_token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each query's tokens as index vocabulary ids (tokens the corpus never had are dropped)."""
        stemmer = _stemmer(self.settings)
        tokens = bm25s.tokenize(
            texts,
            stopwords=self.settings.stopwords,
            stemmer=stemmer,
            return_ids=False,
            show_progress=False,
        )
        return [self.index.get_tokens_ids(row) for row in tokens]

    def search(
        self,
        texts: list[str],
        k: int,
        show_progress: bool = False,
        n_threads: int = -1,
        chunk_queries: int = DEFAULT_CHUNK_QUERIES,
        batched: bool | None = None,
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` passages per query: (scores float32 [nq, k], pids [nq][k]), rank order.

        Only passages sharing a term with the query are results (as in Lucene); rows with
        fewer are padded with -inf and "". Ties are broken by corpus row, ascending.

        Queries go ``chunk_queries`` at a time, so only one chunk's top lists are held beside
        the result. ``batched``: each chunk goes to bm25s's batch ``retrieve`` on ``n_threads``
        threads (-1: every CPU); default: when bm25s runs on numba (numba installed), as its
        numpy backend is slower than the per-query loop (see ``_retrieve_chunk``). Both give
        the same lists and scores.
        """
        check_k(k)
        if batched is None:
            batched = self.index.backend == "numba"
        threads = (os.cpu_count() or 1) if n_threads < 0 else n_threads
        scores = np.full((len(texts), k), -np.inf, dtype=np.float32)
        rows = np.full((len(texts), k), -1, dtype=np.int64)
        queries = self.query_token_ids(texts)
        asked = [i for i, ids in enumerate(queries) if ids]  # no known token: no result
        starts = range(0, len(asked), max(1, chunk_queries))
        for start in tqdm(starts, desc="bm25 search chunks", disable=not show_progress):
            chunk = asked[start : start + max(1, chunk_queries)]
            if batched:
                found = self._retrieve_chunk([queries[i] for i in chunk], k, threads)
            else:
                found = [_top_k(self.index.get_scores_from_ids(queries[i]), k) for i in chunk]
            for i, (top_scores, top_rows) in zip(chunk, found):
                scores[i, : len(top_rows)], rows[i, : len(top_rows)] = top_scores, top_rows
        flat = np.where(rows < 0, len(self._lookup) - 1, rows).ravel()
        pids = self._lookup.take(pa.array(flat)).to_numpy(zero_copy_only=False)
        return scores, pids.reshape(rows.shape).tolist()

    def _retrieve_chunk(
        self, queries: list[list[int]], k: int, threads: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's top ``k`` matching rows by bm25s's batch retrieve, exactly as ``_top_k``.

        bm25s is asked for ``k`` plus a margin and orders equal scores its own way. Re-sorted by
        (score, row), the first ``k`` are exact when the k-th score is above the last one
        returned: every passage left out then scores below it. When the k-th ties with the
        last (a run of equal scores wider than the margin), a tied passage of a lower row may
        have been left out, and that query is scored again alone. Why not always alone: it is
        one Python call per query, while bm25s's numba backend scores a chunk on every core.
        Its numpy backend is no faster: it selects with ``np.argpartition`` over every passage,
        slow on score vectors that are mostly zeros (measured ~20x slower than ``_top_k`` on
        500k passages), so ``search`` uses it only when asked.
        """
        wanted = min(k + 1 + k // 10, len(self))
        if self.index.backend == "numba":
            import numba

            threads = min(threads, numba.config.NUMBA_NUM_THREADS)  # numba's ceiling
        result = self.index.retrieve(
            queries, k=wanted, sorted=False, show_progress=False, n_threads=threads
        )
        found = []
        for ids, values, docs in zip(queries, result.scores, result.documents):
            order = np.lexsort((docs, -values))
            values, docs = values[order], docs[order].astype(np.int64)
            last = values[wanted - 1]
            if wanted < len(self) and last > 0 and values[k - 1] == last:
                found.append(_top_k(self.index.get_scores_from_ids(ids), k))
                continue
            matched = values[:k] > 0  # a prefix: every passage sharing no term scores 0
            found.append((values[:k][matched], docs[:k][matched]))
        return found

    def save(self, folder: str | os.PathLike) -> None:
        """bm25s's index files, the pids and the settings; written atomically."""
        with atomic_dir(folder) as tmp:
            self.index.save(tmp, show_progress=False)
            pq.write_table(pa.table({"pid": self.pids}), tmp / PIDS_FILE)
            write_json_atomic(tmp / SETTINGS_FILE, asdict(self.settings))

    @classmethod
    def load(cls, folder: str | os.PathLike, mmap: bool = False) -> BM25Retriever:
        folder = Path(folder)
        settings = BM25Settings(**json.loads((folder / SETTINGS_FILE).read_text()))
        index = bm25s.BM25.load(
            folder, mmap=mmap, show_progress=False, override_params={"backend": "auto"}
        )
        pids = pq.read_table(folder / PIDS_FILE)["pid"].combine_chunks()
        return cls(index, pids, settings)


def _stemmer(settings: BM25Settings) -> Stemmer.Stemmer | None:
    return Stemmer.Stemmer(settings.stemmer) if settings.stemmer else None


def _top_k(doc_scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of the matching (score > 0) rows: score descending, then row ascending.

    Lucene's idf is always positive, so a passage scores > 0 exactly when it shares a term.
    """
    rows = np.flatnonzero(doc_scores > 0)
    values = doc_scores[rows]
    if len(rows) > k:  # partition first: a common term can match most of a big corpus
        kth = np.partition(values, len(values) - k)[len(values) - k]
        keep = values >= kth  # ties at the k-th score all stay, for a deterministic cut
        rows, values = rows[keep], values[keep]
    order = np.lexsort((rows, -values))[:k]
    return values[order], rows[order]


def bm25_candidates(
    corpus_dir: str | os.PathLike,
    queries_dir: str | os.PathLike,
    k: int,
    exclude_qrels_dir: str | os.PathLike | None = None,
    retriever: BM25Retriever | None = None,
    show_progress: bool = True,
    chunk_queries: int = DEFAULT_CHUNK_QUERIES,
) -> pa.Table:
    """BM25's top-``k`` per query as a CANDIDATES table (qid, pids, scores in rank order).

    With ``exclude_qrels_dir``, each query's judged positives (relevance > 0) are removed, as DPR
    does when it mines BM25 hard negatives; the list is still filled up to ``k`` where possible.
    Pass a built ``retriever`` to reuse one index for several query sets. Queries are searched
    ``chunk_queries`` at a time and each chunk's lists kept as Arrow, not Python, objects.
    """
    check_k(k)
    if retriever is None:
        retriever = BM25Retriever.build(corpus_dir, show_progress=show_progress)
    qids, texts = read_queries(queries_dir)
    positives: dict[str, set[str]] = {}
    if exclude_qrels_dir is not None:
        qrels = read_qrels(exclude_qrels_dir)
        positives = {q: {p for p, rel in judged.items() if rel > 0} for q, judged in qrels.items()}
    extra = max((len(positives.get(qid, ())) for qid in qids), default=0)
    chunks = [to_candidates([], np.zeros((0, k), np.float32), [])]
    starts = range(0, len(qids), max(1, chunk_queries))
    for start in tqdm(starts, desc="bm25 candidates", disable=not show_progress):
        chunk = slice(start, start + max(1, chunk_queries))
        scores, pids = retriever.search(texts[chunk], k + extra)
        kept_scores = np.full((len(pids), k), -np.inf, dtype=np.float32)
        kept_pids = [[""] * k for _ in pids]
        for i, qid in enumerate(qids[chunk]):
            drop = positives.get(qid, set())
            cols = [j for j, pid in enumerate(pids[i]) if pid and pid not in drop][:k]
            kept_scores[i, : len(cols)] = scores[i, cols]
            kept_pids[i][: len(cols)] = [pids[i][j] for j in cols]
        chunks.append(to_candidates(qids[chunk], kept_scores, kept_pids))
    return pa.concat_tables(chunks)


def evaluate_bm25(
    tables_dir: str | os.PathLike,
    split: str,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    k: int = 100,
    retriever: BM25Retriever | None = None,
    show_progress: bool = True,
) -> RetrievalResult:
    """Score BM25 on ``tables_dir``'s ``queries-{split}`` against its ``corpus``, like
    ``evaluate_retriever`` does for a dual encoder (qrels metrics and/or answer recall)."""
    tables_dir = Path(tables_dir)
    check_labels(tables_dir, split)  # fail before indexing
    timings: dict[str, float] = {}
    if retriever is None:
        started = time.perf_counter()
        retriever = BM25Retriever.build(tables_dir / "corpus", show_progress=show_progress)
        timings["index"] = time.perf_counter() - started
    started = time.perf_counter()
    qids, texts = read_queries(tables_dir / f"queries-{split}")
    scores, pids = retriever.search(texts, k, show_progress=show_progress)
    timings["search"] = time.perf_counter() - started
    result = evaluate_search(tables_dir, split, qids, scores, pids, metrics)
    result.timings_s.update(timings)
    return result
