"""The evaluators of evaluation while training, each held to an outside reference on the
committed excerpts: the re-ranker's metrics to pytrec_eval over logits computed pair by pair,
the STS evaluator to scipy's Spearman, and the dev sample and pool to explicit checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from retrieval.tables.labels import read_qrels
from retrieval.tables.schemas import CANDIDATES
from retrieval.tables.store import read_table, write_table

STSB = Path(__file__).resolve().parents[2] / "data" / "stsb"


def settings(**overrides) -> SimpleNamespace:
    base = dict(split="dev", max_queries=1000, seed=0, candidates=None, depth=5, pool_size=1000)
    return SimpleNamespace(**{**base, **overrides})


def test_dev_sample_and_pool(scifact_tables):
    from retrieval.training.evaluation.dev_set import sample_queries
    from retrieval.training.evaluation.retriever import RetrieverEvaluator

    qrels = read_qrels(scifact_tables / "qrels-dev")
    judged = {q for q, rels in qrels.items() if any(r > 0 for r in rels.values())}
    first = sample_queries(scifact_tables, "dev", 10, seed=0)
    assert first.qids == sorted(set(first.qids)) and len(first.qids) == 10
    assert set(first.qids) <= judged
    assert sample_queries(scifact_tables, "dev", 10, seed=0).qids == first.qids
    assert sample_queries(scifact_tables, "dev", 10, seed=1).qids != first.qids
    assert sorted(sample_queries(scifact_tables, "dev", 1000, seed=0).qids) == sorted(judged)

    evaluator = RetrieverEvaluator(
        scifact_tables, settings(max_queries=10, pool_size=50), "ndcg@10"
    )
    pool = evaluator.pool.pids
    positives = {p for q in first.qids for p, r in qrels[q].items() if r > 0}
    corpus = set(read_table(scifact_tables / "corpus", columns=["pid"])["pid"].to_pylist())
    assert len(pool) == len(set(pool)) and positives <= set(pool) <= corpus
    assert 50 <= len(pool) <= 50 + len(positives) and len(corpus) > len(pool)


def candidates_table(tables: Path, out: Path) -> dict[str, list[str]]:
    """Each dev query's list: its positives and the next corpus passages, 6 pids."""
    qrels = read_qrels(tables / "qrels-dev")
    corpus = read_table(tables / "corpus", columns=["pid"])["pid"].to_pylist()
    lists = {}
    for i, qid in enumerate(sorted(qrels)):
        positives = [p for p, r in qrels[qid].items() if r > 0]
        others = [p for p in corpus[i * 3 : i * 3 + 10] if p not in positives]
        lists[qid] = (positives + others)[:6]
    rows = [{"qid": q, "pids": p, "scores": [0.0] * len(p)} for q, p in lists.items()]
    write_table(out, rows, CANDIDATES)
    return lists


def test_reranker_metrics_are_pytrec_evals_on_pairwise_logits(tmp_path, scifact_tables,
                                                             tiny_bert_dir):  # fmt: skip
    import pytrec_eval

    from retrieval.models import CrossEncoder
    from retrieval.tables.lookup import passages_of, queries_of
    from retrieval.training.evaluation.reranker import RerankerEvaluator

    lists = candidates_table(scifact_tables, tmp_path / "candidates")
    model = CrossEncoder.from_pretrained(tiny_bert_dir).eval()
    evaluator = RerankerEvaluator(
        scifact_tables, settings(candidates=tmp_path / "candidates", depth=6), "ndcg@10"
    )
    got = evaluator(model)

    qrels = read_qrels(scifact_tables / "qrels-dev")
    queries = queries_of(scifact_tables / "queries-dev", lists)
    passages = passages_of(scifact_tables / "corpus", {p for ps in lists.values() for p in ps})
    run = {}
    with torch.no_grad():
        for qid, pids in lists.items():
            run[qid] = {}
            for pid in pids:  # one pair at a time: no padding
                title, text = passages[pid]
                logit = model(model.tokenize([queries[qid]], [title], [text]))
                run[qid][pid] = float(logit[0])
    judged = {q: qrels[q] for q in lists}
    measures = {"ndcg_cut_10", "recip_rank", "recall_10"}
    found = pytrec_eval.RelevanceEvaluator(judged, measures).evaluate(run)
    assert got["ndcg@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in found.values()]))
    assert got["mrr@10"] == pytest.approx(np.mean([v["recip_rank"] for v in found.values()]))
    assert got["recall@10"] == pytest.approx(np.mean([v["recall_10"] for v in found.values()]))


def test_reranker_lists_without_candidates(scifact_tables):
    from retrieval.training.evaluation.reranker import RerankerEvaluator

    evaluator = RerankerEvaluator(scifact_tables, settings(depth=7, pool_size=100), "ndcg@10")
    qrels = read_qrels(scifact_tables / "qrels-dev")
    for qid in evaluator.queries.qids:
        positives = sorted(p for p, r in qrels[qid].items() if r > 0)
        found = evaluator.lists[qid]
        assert found[: len(positives)] == positives
        assert len(found) == max(7, len(positives)) and len(set(found)) == len(found)


def test_sts_spearman_is_scipys(tiny_bert_dir):
    from scipy.stats import spearmanr

    from retrieval.encoding import encode_queries
    from retrieval.evaluation import read_sentence_pairs
    from retrieval.models import DualEncoder
    from retrieval.training.evaluation.sts import StsEvaluator

    model = DualEncoder.from_pretrained(tiny_bert_dir)
    got = StsEvaluator(STSB, settings())(model)
    pairs = read_sentence_pairs(STSB / "dev.tsv")
    a = encode_queries(model, pairs.sentences1, show_progress=False)
    b = encode_queries(model, pairs.sentences2, show_progress=False)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    # the evaluator batches each distinct sentence once: float rounding of other batches can
    # swap the ranks of near-equal cosines, a change in the fifth decimal at most
    assert got["spearman"] == pytest.approx(spearmanr(pairs.labels, cosine).statistic, abs=1e-4)

    sampled = StsEvaluator(STSB, settings(max_queries=40))
    assert len(sampled.pairs) == 40 and set(sampled.pairs.sentences1) <= set(pairs.sentences1)
