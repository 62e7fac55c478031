"""BM25Retriever against the Lucene BM25 formula written out here, and on real SciFact dev.

Tokens come from bm25s's own tokenizer and PyStemmer (the text processing is configuration);
the scoring reference is independent of bm25s: the library must not grade itself. The batched
search (bm25s's batch retrieve) is held against a per-query full sort written out here.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import bm25s
import numpy as np
import pytest
import pytrec_eval
import Stemmer

from retrieval.bm25 import BM25Retriever, bm25_candidates, evaluate_bm25
from retrieval.retriever import read_queries, to_candidates
from retrieval.tables import CORPUS, QRELS, QUERIES, read_table, write_table
from tests.helpers_data import expected_number, read_beir_qrels

K1, B = 0.9, 0.4
DOCS = [  # (pid, title, text); rows 5 and 6 are identical, their pids in reverse order
    ("d0", "Cats", "The cat sat on the mat."),
    ("d1", "", "Dogs and cats are running; a dog runs fast, faster than cats."),
    ("d2", None, "Mats of fast running cats"),
    ("d3", "", "the and of"),  # stopwords only: a passage with no tokens
    ("d4", "Quantum", "Quantum physics of cats and dogs, and of quantum dogs"),
    ("b2", "Birds", "Bird song in the morning"),
    ("b1", "Birds", "Bird song in the morning"),
    ("d7", "Physics", "Running experiments in physics labs"),
]
QUERY_TEXTS = [
    "running cats",
    "Dog",
    "the of",  # stopwords only
    "quantum cat cat",  # a repeated term counts twice
    "bird songs",
    "zebra unknownword",  # no term in the corpus
    "physics of running dogs",
]


def tokens_of(texts: list[str]) -> list[list[str]]:
    stemmer = Stemmer.Stemmer("english")
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )


class LuceneBM25:
    """Lucene BM25 of a query against every doc of a tokenized corpus, summed over the query's
    tokens (a repeated token counts each time)::

        idf = ln(1 + (N - df + 0.5) / (df + 0.5))
        tf part = tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))

    Lucene >= 8 (and bm25s's "lucene") drop the constant factor (k1 + 1), so it is divided out.
    """

    def __init__(self, docs: list[list[str]]):
        self.n = len(docs)
        self.avgdl = sum(len(d) for d in docs) / self.n
        self.lengths = [len(d) for d in docs]
        self.postings: dict[str, dict[int, int]] = {}  # token -> {doc: tf}
        for row, doc in enumerate(docs):
            for token, tf in Counter(doc).items():
                self.postings.setdefault(token, {})[row] = tf

    def scores(self, query: list[str]) -> dict[int, float]:
        """``{doc row: score}`` of every doc that shares a token with ``query``."""
        totals: dict[int, float] = {}
        for token in query:
            docs = self.postings.get(token, {})
            idf = math.log(1 + (self.n - len(docs) + 0.5) / (len(docs) + 0.5))
            for row, tf in docs.items():
                norm = K1 * (1 - B + B * self.lengths[row] / self.avgdl)
                part = tf * (K1 + 1) / (tf + norm)
                totals[row] = totals.get(row, 0.0) + idf * part / (K1 + 1)
        return totals


def doc_texts(docs=DOCS) -> list[str]:
    """Title, a space, body (BEIR's passage text); the body alone without a title."""
    return [f"{title} {text}".strip() if title else text for _, title, text in docs]


@pytest.fixture(scope="module")
def tiny_tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("bm25")
    rows = [{"pid": p, "title": t, "text": x} for p, t, x in DOCS]
    write_table(root / "corpus", rows, CORPUS, shard_rows=3)  # several shards
    queries = [{"qid": f"q{i}", "text": t} for i, t in enumerate(QUERY_TEXTS)]
    write_table(root / "queries-dev", queries, QUERIES)
    qrels = [
        {"qid": "q0", "pid": "d2", "relevance": 1},
        {"qid": "q0", "pid": "d1", "relevance": 2},
        {"qid": "q0", "pid": "d0", "relevance": 0},  # judged, not relevant: may stay
        {"qid": "q4", "pid": "b1", "relevance": 1},
    ]
    write_table(root / "qrels-dev", qrels, QRELS)
    return root


@pytest.fixture(scope="module")
def tiny(tiny_tables) -> BM25Retriever:
    return BM25Retriever.build(tiny_tables / "corpus", show_progress=False)


def test_scores_equal_lucene_formula(tiny):
    lucene = LuceneBM25(tokens_of(doc_texts()))
    k = len(DOCS) + 2  # more than the corpus: the tail is padding
    scores, pids = tiny.search(QUERY_TEXTS, k)
    assert scores.shape == (len(QUERY_TEXTS), k) and scores.dtype == np.float32
    for query, row_scores, row_pids in zip(tokens_of(QUERY_TEXTS), scores, pids):
        matched = {DOCS[row][0]: s for row, s in lucene.scores(query).items()}
        got = {pid: float(s) for pid, s in zip(row_pids, row_scores) if pid}
        assert got.keys() == matched.keys()
        for pid, value in matched.items():
            assert got[pid] == pytest.approx(value, rel=1e-5)
        n = len(matched)
        assert list(row_scores[:n]) == sorted(row_scores[:n], reverse=True)
        assert np.all(np.isneginf(row_scores[n:])) and row_pids[n:] == [""] * (k - n)


def test_edge_queries_and_ties(tiny):
    scores, pids = tiny.search(["the of", "zebra unknownword", "bird songs", ""], 3)
    for row in range(2):  # no term of the corpus: nothing matches
        assert pids[row] == ["", "", ""] and np.all(np.isneginf(scores[row]))
    assert pids[2][:2] == ["b2", "b1"]  # identical passages: ties go to the lower corpus row
    assert scores[2, 0] == scores[2, 1] > 0
    assert pids[3] == ["", "", ""]
    assert tiny.search([], 4)[0].shape == (0, 4)
    with pytest.raises(ValueError):
        tiny.search(["cats"], 0)


def per_query_top_k(retriever: BM25Retriever, texts: list[str], k: int):
    """The search as it was before batching, written plainly: each query's scores over the
    whole corpus, every matching row sorted by (score descending, row ascending), cut at k."""
    scores = np.full((len(texts), k), -np.inf, dtype=np.float32)
    pids = [[""] * k for _ in texts]
    for i, ids in enumerate(retriever.query_token_ids(texts)):
        if not ids:
            continue
        doc_scores = retriever.index.get_scores_from_ids(ids)
        rows = sorted(np.flatnonzero(doc_scores > 0), key=lambda r: (-doc_scores[r], r))[:k]
        scores[i, : len(rows)] = doc_scores[rows]
        pids[i][: len(rows)] = [retriever.pids[int(r)].as_py() for r in rows]
    return scores, pids


def assert_same_search(got, expected):
    np.testing.assert_array_equal(got[0], expected[0])  # bit for bit, -inf padding included
    assert got[1] == expected[1]


@pytest.mark.parametrize("k", [1, 2, 3, 20])
def test_batched_search_breaks_ties_at_the_cut_by_row(tiny, k):
    """b2 and b1 are the same passage: at k=1 they tie exactly at the cut, where bm25s's own
    selection may keep either; the search must keep the lower corpus row (b2)."""
    expected = per_query_top_k(tiny, QUERY_TEXTS, k)
    for batched in (True, False):
        assert_same_search(tiny.search(QUERY_TEXTS, k, batched=batched, chunk_queries=3), expected)
    assert tiny.search(["bird songs"], 1, batched=True)[1] == [["b2"]]


def test_a_tie_wider_than_the_margin_is_searched_again(tmp_path, monkeypatch):
    """Five copies of one passage tie for the top; bm25s may return any of them. A stand-in
    retrieve that returns the highest rows of a tie (a valid top-k by score) must not change
    the result: the lowest rows win, as in the per-query search."""
    rows = [{"pid": f"c{i}", "title": "", "text": "bird song at dawn"} for i in range(5)]
    rows += [{"pid": f"o{i}", "title": "", "text": f"bird number {i} of many"} for i in range(6)]
    write_table(tmp_path / "corpus", rows, CORPUS)
    retriever = BM25Retriever.build(tmp_path / "corpus", show_progress=False)
    real = retriever.index.retrieve

    def worst_ties(queries, k, **kwargs):
        result = real(queries, k=len(retriever), **kwargs)
        docs, values = [], []
        for d, v in zip(result.documents, result.scores):
            order = np.lexsort((-d, -v))[:k]  # equal scores: the highest row first
            docs.append(d[order]), values.append(v[order])
        return type(result)(documents=np.array(docs), scores=np.array(values))

    monkeypatch.setattr(retriever.index, "retrieve", worst_ties)
    for k in (1, 2, 4):
        got = retriever.search(["bird song"], k, batched=True)
        assert got[1] == [[f"c{i}" for i in range(k)]]
        assert_same_search(got, per_query_top_k(retriever, ["bird song"], k))


def test_top_k_is_a_prefix_of_the_full_ranking(tiny):
    full_scores, full_pids = tiny.search(QUERY_TEXTS, len(DOCS))
    scores, pids = tiny.search(QUERY_TEXTS, 2)
    assert [row[:2] for row in full_pids] == pids
    np.testing.assert_array_equal(full_scores[:, :2], scores)


def test_save_load_round_trip(tiny, tmp_path):
    tiny.save(tmp_path / "bm25")
    again = BM25Retriever.load(tmp_path / "bm25")
    assert len(again) == len(tiny) and again.settings == tiny.settings
    for a, b in zip(tiny.search(QUERY_TEXTS, 5), again.search(QUERY_TEXTS, 5)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_candidates_drop_judged_positives(tiny, tiny_tables):
    plain = bm25_candidates(
        tiny_tables / "corpus", tiny_tables / "queries-dev", 3, retriever=tiny, show_progress=False
    )
    scores, pids = tiny.search(QUERY_TEXTS, 3)
    assert plain.equals(to_candidates([f"q{i}" for i in range(len(QUERY_TEXTS))], scores, pids))
    mined = bm25_candidates(
        tiny_tables / "corpus",
        tiny_tables / "queries-dev",
        3,
        exclude_qrels_dir=tiny_tables / "qrels-dev",
        retriever=tiny,
        show_progress=False,
    ).to_pylist()
    full_scores, full_pids = tiny.search(QUERY_TEXTS, len(DOCS))
    drop = {"q0": {"d1", "d2"}, "q4": {"b1"}}
    for i, row in enumerate(mined):
        keep = [
            (p, float(s))
            for p, s in zip(full_pids[i], full_scores[i])
            if p and p not in drop.get(row["qid"], set())
        ][:3]
        assert list(zip(row["pids"], row["scores"])) == keep
    assert "d0" in mined[0]["pids"] and len(mined[0]["pids"]) == 3  # refilled up to k
    in_chunks = bm25_candidates(
        tiny_tables / "corpus",
        tiny_tables / "queries-dev",
        3,
        exclude_qrels_dir=tiny_tables / "qrels-dev",
        retriever=tiny,
        show_progress=False,
        chunk_queries=2,  # 7 queries: 4 chunks, the last of one
    )
    assert in_chunks.to_pylist() == mined


def test_evaluate_needs_labels(tiny_tables):
    with pytest.raises(FileNotFoundError):
        evaluate_bm25(tiny_tables, "test", show_progress=False)


@pytest.fixture(scope="module")
def scifact_bm25(scifact_tables) -> BM25Retriever:
    return BM25Retriever.build(scifact_tables / "corpus", show_progress=False)


@pytest.mark.parametrize("k", [10, 100, 1000])
def test_batched_search_equals_the_per_query_search_on_scifact(scifact_bm25, scifact_tables, k):
    """Every SciFact train and dev query, in chunks on two threads: the same top-k, the same
    float32 scores and the same padding as one query at a time."""
    texts = read_queries(scifact_tables / "queries-train")[1]
    texts += read_queries(scifact_tables / "queries-dev")[1]
    expected = per_query_top_k(scifact_bm25, texts, k)
    got = scifact_bm25.search(texts, k, batched=True, n_threads=2, chunk_queries=257)
    assert_same_search(got, expected)
    assert_same_search(scifact_bm25.search(texts, k), expected)  # the default path


@pytest.mark.skipif(not bm25s.NUMBA_AVAILABLE, reason="bm25s's numba backend needs numba")
def test_numba_batched_search_equals_the_per_query_search(
    tiny_tables, scifact_bm25, scifact_tables
):
    fast = BM25Retriever.build(tiny_tables / "corpus", show_progress=False)
    assert fast.index.backend == "numba"
    for k in (1, 3):
        assert_same_search(fast.search(QUERY_TEXTS, k), per_query_top_k(fast, QUERY_TEXTS, k))
    texts = read_queries(scifact_tables / "queries-dev")[1]
    got = scifact_bm25.search(texts, 100, n_threads=2)
    assert_same_search(got, per_query_top_k(scifact_bm25, texts, 100))


def lucene_run(beir: Path, qids: set[str], k: int) -> dict[str, dict[str, float]]:
    """The top ``k`` of each query by the Lucene formula above over the raw BEIR files: bm25s's
    tokenizer and the Snowball stemmer, title + " " + text, nothing else from RQA."""
    docs = [json.loads(line) for line in (beir / "corpus.jsonl").open(encoding="utf-8")]
    lucene = LuceneBM25(tokens_of(doc_texts([(d["_id"], d["title"], d["text"]) for d in docs])))
    queries = [json.loads(line) for line in (beir / "queries.jsonl").open(encoding="utf-8")]
    queries = [q for q in queries if q["_id"] in qids]
    run = {}
    for query, tokens in zip(queries, tokens_of([q["text"] for q in queries])):
        top = sorted(lucene.scores(tokens).items(), key=lambda item: -item[1])[:k]
        run[query["_id"]] = {docs[row]["_id"]: score for row, score in top}
    return run


def check_against_the_formula(result, beir: Path) -> None:
    """``result``'s nDCG@10 and recall@100 on dev are pytrec_eval's on the run the Lucene
    formula written out here ranks from the BEIR files at ``beir``."""
    qrels = read_beir_qrels(beir, "dev")
    reference = lucene_run(beir, set(qrels), k=100)
    measures = {"ndcg_cut.10", "recall.100"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(reference)
    assert per_query.keys() == qrels.keys() and len(result.run) == len(qrels)
    for metric, measure in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100")):
        expected = sum(row[measure] for row in per_query.values()) / len(per_query)
        assert result.metrics[metric] == pytest.approx(expected, abs=1e-6), metric


def test_scifact_excerpt_dev_metrics_and_mined_negatives(scifact_bm25, scifact_tables, scifact_dir):
    """On the SciFact excerpt: dev nDCG@10 and recall@100 as the formula gives them, and BM25
    negatives mined for train queries leave out every judged positive."""
    result = evaluate_bm25(
        scifact_tables, "dev", ("ndcg@10", "recall@100"), retriever=scifact_bm25,
        show_progress=False,
    )  # fmt: skip
    check_against_the_formula(result, scifact_dir)
    mined = bm25_candidates(
        scifact_tables / "corpus",
        scifact_tables / "queries-train",
        10,
        exclude_qrels_dir=scifact_tables / "qrels-train",
        retriever=scifact_bm25,
        show_progress=False,
    )
    qrels = read_table(scifact_tables / "qrels-train").to_pylist()
    positives = {(r["qid"], r["pid"]) for r in qrels if r["relevance"] > 0}
    rows = mined.to_pylist()
    assert all(len(row["pids"]) == 10 for row in rows)
    assert not any((row["qid"], pid) in positives for row in rows for pid in row["pids"])


def test_scifact_dev_ndcg(full_scifact_dir, tmp_path):
    """On the whole of SciFact (../shared): dev nDCG@10 and recall@100 as the formula gives
    them, and nDCG@10 the figure tests/data/expected_numbers.yaml keeps with its source."""
    from retrieval.tables.readers import prepare_beir

    prepare_beir(full_scifact_dir, tmp_path / "tables", splits=["dev"])
    retriever = BM25Retriever.build(tmp_path / "tables" / "corpus", show_progress=False)
    assert len(retriever) == 5183
    result = evaluate_bm25(
        tmp_path / "tables", "dev", ("ndcg@10", "recall@100"), retriever=retriever,
        show_progress=False,
    )  # fmt: skip
    assert len(result.run) == 100
    check_against_the_formula(result, full_scifact_dir)
    recorded = expected_number("scifact_dev_bm25_ndcg10")
    assert result.metrics["ndcg@10"] == pytest.approx(recorded["value"], abs=recorded["tolerance"])


def test_importing_rqas_bm25_keeps_jax_off_the_gpu():
    """bm25s runs a JAX top-k at import when JAX is installed, and JAX then reserves 75% of
    every visible GPU (every GPU test ran out of memory on an H200 for it): RQA's BM25 module
    sets JAX_PLATFORMS=cpu first, unless the user chose a platform."""
    import subprocess
    import sys

    code = (
        "import os; os.environ.pop('JAX_PLATFORMS', None); {}; import retrieval.bm25; "
        "print(os.environ.get('JAX_PLATFORMS'))"
    )
    chosen = "os.environ['JAX_PLATFORMS'] = 'cuda'"
    outputs = [
        subprocess.run(
            [sys.executable, "-c", code.format(setup)], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
        for setup in ("pass", chosen)
    ]
    assert outputs == ["cpu", "cuda"]


KERNEL_STATS = """
import importlib, sys
from numba.core.dispatcher import Dispatcher
from retrieval.bm25 import BM25Retriever
from retrieval.bm25_kernel_cache import KERNEL_MODULES
BM25Retriever.build(sys.argv[1], show_progress=False).search(["bird songs", "cats"], 2)
kernels = [k for m in KERNEL_MODULES for k in vars(importlib.import_module(m)).values()
           if isinstance(k, Dispatcher)]
print(sum(sum(k.stats.cache_hits.values()) for k in kernels),
      sum(sum(k.stats.cache_misses.values()) for k in kernels))
"""


def test_a_later_process_loads_bm25s_kernels_from_numbas_cache(tiny, tiny_tables):
    """bm25s asks numba for no cache, so each process compiled its kernels again (~8 s on 2
    cores: every BM25 mining task, every evaluate); retrieval/bm25_kernel_cache.py turns the
    cache on. This process's search writes the cache (or reads it), a new process compiles
    nothing: every kernel it runs is a cache hit (without the cache: no hits)."""
    import subprocess
    import sys

    tiny.search(["bird songs", "cats"], 2)
    out = subprocess.run(
        [sys.executable, "-c", KERNEL_STATS, str(tiny_tables / "corpus")],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    hits, misses = int(out[-2]), int(out[-1])
    assert hits > 0 and misses == 0, (hits, misses)
