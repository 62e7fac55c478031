"""Reciprocal rank fusion against sums worked out by hand."""

from __future__ import annotations

import pytest

from retrieval.fusion import reciprocal_rank_fusion
from retrieval.metrics import evaluate


def test_rrf_sums_reciprocal_ranks_worked_by_hand():
    retriever = {"q": {"a": 0.9, "b": 0.8, "c": 0.1}}
    reranker = {"q": {"c": 5.0, "a": 1.0, "b": -2.0}}
    fused = reciprocal_rank_fusion([retriever, reranker], k=60)
    assert fused["q"]["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["q"]["b"] == pytest.approx(1 / 62 + 1 / 63)
    assert fused["q"]["c"] == pytest.approx(1 / 63 + 1 / 61)
    # a (ranks 1, 2) beats c (ranks 3, 1), which beats b (ranks 2, 3)
    assert sorted(fused["q"], key=fused["q"].get, reverse=True) == ["a", "c", "b"]


def test_rrf_with_k_zero_and_documents_missing_from_one_run():
    fused = reciprocal_rank_fusion(
        [{"q": {"a": 2.0, "b": 1.0}}, {"q": {"b": 3.0}, "r": {"x": 1.0}}], k=0
    )
    assert fused == {"q": {"a": 1.0, "b": 0.5 + 1.0}, "r": {"x": 1.0}}


def test_rrf_breaks_score_ties_in_trec_order():
    # equal scores rank by docid descending (trec_eval), so "b" is rank 1 and "a" rank 2
    fused = reciprocal_rank_fusion([{"q": {"a": 1.0, "b": 1.0}}], k=0)
    assert fused == {"q": {"b": 1.0, "a": 0.5}}


def test_rrf_of_one_run_keeps_its_order_and_metrics():
    run = {"q1": {"a": 0.3, "b": 0.9, "c": 0.5}, "q2": {"x": 1.0, "y": 2.0}}
    qrels = {"q1": {"c": 1}, "q2": {"x": 1}}
    fused = reciprocal_rank_fusion([run])
    measures = ("ndcg@10", "mrr@10")
    assert evaluate(qrels, fused, measures) == evaluate(qrels, run, measures)


def test_rrf_rejects_no_runs_and_negative_k():
    with pytest.raises(ValueError, match="no runs"):
        reciprocal_rank_fusion([])
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion([{"q": {"a": 1.0}}], k=-1)
