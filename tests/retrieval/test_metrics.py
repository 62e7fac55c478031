"""Ranking metrics checked against pytrec_eval on random runs and against hand-worked numbers.

Holds tests of retrieval.metrics.{order,ranking,evaluate} only; answers and TREC files elsewhere.
"""

from __future__ import annotations

import math

import pytest
import pytrec_eval

from retrieval.metrics import (
    Hits,
    average_precision,
    evaluate,
    mrr_at_k,
    ndcg_at_k,
    parse_metric,
    per_query,
    precision_at_k,
    recall_at_k,
    relevant_ranks,
    trec_order,
)
from tests.retrieval.random_runs import random_case

# our name -> pytrec_eval measure key, on the full (untruncated) run
PYTREC_NAMES = {
    "ndcg@10": "ndcg_cut_10",
    "ndcg@3": "ndcg_cut_3",
    "recall@10": "recall_10",
    "recall@100": "recall_100",
    "map": "map",
    "map@10": "map_cut_10",
    "precision@5": "P_5",
    "mrr@1000": "recip_rank",  # every random run is shorter than 1000, so no cut applies
}
PYTREC_MEASURES = {"ndcg_cut.3,10", "recall.10,100", "map", "map_cut.10", "P.5", "recip_rank"}


def reference(qrels, run, measures=PYTREC_MEASURES) -> dict[str, dict[str, float]]:
    """pytrec_eval per query over the queries with a relevant doc; a query it skips scores 0."""
    found = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    wanted = [qid for qid, rels in qrels.items() if any(r > 0 for r in rels.values())]
    return {qid: found.get(qid, {}) for qid in wanted}


def truncate(run: dict[str, dict[str, float]], k: int) -> dict[str, dict[str, float]]:
    return {
        qid: {pid: scores[pid] for pid in trec_order(scores)[:k]} for qid, scores in run.items()
    }


@pytest.mark.parametrize("seed", range(40))
def test_per_query_equals_pytrec_eval(seed: int) -> None:
    qrels, run = random_case(seed)
    ours = per_query(qrels, run, [*PYTREC_NAMES, "mrr@10", "mrr@3"], ignore_identical_ids=False)
    expected = reference(qrels, run)
    assert ours.keys() == expected.keys()
    rr10 = reference(qrels, truncate(run, 10), {"recip_rank"})
    for qid, row in expected.items():
        for name, key in PYTREC_NAMES.items():
            assert ours[qid][name] == pytest.approx(row.get(key, 0.0), abs=1e-12), (qid, name)
        # MRR@10 two independent ways: pytrec_eval on the run cut to its top 10, and RR@k = RR
        # when 1 / RR <= k (else 0) applied to pytrec_eval's uncut recip_rank.
        assert ours[qid]["mrr@10"] == pytest.approx(rr10[qid].get("recip_rank", 0.0), abs=1e-12)
        rr = row.get("recip_rank", 0.0)
        assert ours[qid]["mrr@3"] == pytest.approx(rr if rr >= 1 / 3 - 1e-12 else 0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_evaluate_is_the_mean_of_pytrec_eval_with_missing_queries_as_zero(seed: int) -> None:
    qrels, run = random_case(seed)
    expected = reference(qrels, run)
    ours = evaluate(qrels, run, ["ndcg@10", "map", "recall@100"], ignore_identical_ids=False)
    for name in ("ndcg@10", "map", "recall@100"):
        key = PYTREC_NAMES[name]
        mean = sum(row.get(key, 0.0) for row in expected.values()) / len(expected)
        assert ours[name] == pytest.approx(mean, abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_rank_lookup_agrees_with_sorting(seed: int) -> None:
    qrels, run = random_case(seed)
    for qid, scores in run.items():
        rels = qrels.get(qid, {})
        assert Hits.from_scores(scores, rels) == Hits.from_ranking(trec_order(scores), rels)


def test_ties_break_by_docid_descending_as_strings() -> None:
    scores = {"d1": 1.0, "d10": 1.0, "d2": 1.0, "d3": 0.5, "d30": 2.0}
    # score desc, then docid desc as strings: "d2" > "d10" > "d1"
    assert trec_order(scores) == ["d30", "d2", "d10", "d1", "d3"]
    assert relevant_ranks(scores, {"d10": 1, "d3": 2, "d2": 0}) == [(3, 1), (5, 2)]
    qrels = {"q": {"d10": 1}}
    got = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate({"q": scores})
    assert got["q"]["recip_rank"] == pytest.approx(1 / 3)
    assert per_query(qrels, {"q": scores}, ["mrr@10"])["q"]["mrr@10"] == pytest.approx(1 / 3)


def test_hand_worked_three_doc_ranking() -> None:
    # Ranking a, b, c; qrels a=0, b=2, c=1 and d=3 (judged, not retrieved). Relevant: b, c, d (R=3).
    hits = Hits.from_ranking(["a", "b", "c"], {"a": 0, "b": 2, "c": 1, "d": 3})
    assert hits == Hits(ranks=(2, 3), gains=(2, 1), ideal=(3, 2, 1))
    # DCG@3  = 0/log2(2) + 2/log2(3) + 1/log2(4) = 1.2618595071429148 + 0.5 = 1.7618595071429148
    # IDCG@3 = 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.2618595071429148 + 0.5 = 4.761859507142915
    # nDCG@3 = 1.7618595071429148 / 4.761859507142915 = 0.3699940127381077
    assert ndcg_at_k(hits, 3) == pytest.approx(0.3699940127381077, rel=1e-12)
    # nDCG@1: DCG@1 = 0 (a is not relevant)
    assert ndcg_at_k(hits, 1) == 0.0
    # nDCG@2 = (2/log2(3)) / (3 + 2/log2(3)) = 1.2618595 / 4.2618595 = 0.29607...
    assert ndcg_at_k(hits, 2) == pytest.approx(1.2618595071429148 / 4.261859507142915)
    assert mrr_at_k(hits, 1) == 0.0
    assert mrr_at_k(hits, 2) == 0.5  # first relevant doc, b, at rank 2
    assert recall_at_k(hits, 2) == pytest.approx(1 / 3)  # b of {b, c, d}
    assert recall_at_k(hits, 10) == pytest.approx(2 / 3)  # d never retrieved
    assert precision_at_k(hits, 2) == 0.5
    assert precision_at_k(hits, 10) == pytest.approx(0.2)  # P@10 divides by 10, not by 3
    # AP = (P@2 + P@3) / R = (1/2 + 2/3) / 3 = 7/18; AP@2 = (1/2) / 3 = 1/6
    assert average_precision(hits) == pytest.approx(7 / 18)
    assert average_precision(hits, 2) == pytest.approx(1 / 6)
    # the same numbers by name through per_query, from scores
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    qrels = {"q": {"a": 0, "b": 2, "c": 1, "d": 3}}
    row = per_query(qrels, run, ["ndcg@3", "mrr@10", "recall@2", "precision@2", "map", "map@2"])
    assert row["q"] == pytest.approx(
        {
            "ndcg@3": 0.3699940127381077,
            "mrr@10": 0.5,
            "recall@2": 1 / 3,
            "precision@2": 0.5,
            "map": 7 / 18,
            "map@2": 1 / 6,
        }
    )


def test_ndcg_uses_log2_discount_and_linear_gain() -> None:
    # one doc of relevance 3 at rank 4: DCG = 3 / log2(5); IDCG = 3 / log2(2) = 3
    hits = Hits(ranks=(4,), gains=(3,), ideal=(3,))
    assert ndcg_at_k(hits, 10) == pytest.approx(1 / math.log2(5))
    assert ndcg_at_k(hits, 3) == 0.0


def test_mean_skips_unjudged_queries_and_counts_missing_run_as_zero() -> None:
    qrels = {
        "q1": {"a": 1},  # retrieved at rank 1: MRR 1
        "q2": {"b": 1},  # no run entry: 0
        "q3": {"c": 0},  # no relevant doc: left out of the mean
    }
    run = {"q1": {"a": 1.0, "x": 0.5}, "q3": {"c": 1.0}, "q9": {"a": 1.0}}
    assert per_query(qrels, run, ["mrr@10"]) == {"q1": {"mrr@10": 1.0}, "q2": {"mrr@10": 0.0}}
    assert evaluate(qrels, run, ["mrr@10", "recall@1"]) == {"mrr@10": 0.5, "recall@1": 0.5}


def test_default_metrics() -> None:
    qrels = {"q1": {"a": 1}}
    assert evaluate(qrels, {"q1": {"a": 1.0}}) == {
        "ndcg@10": 1.0,
        "mrr@10": 1.0,
        "recall@10": 1.0,
        "recall@100": 1.0,
    }


def test_ignore_identical_ids_drops_the_query_itself_from_the_run() -> None:
    qrels = {"q1": {"a": 1}}
    run = {"q1": {"q1": 9.0, "a": 1.0}}
    assert evaluate(qrels, run, ["mrr@10"]) == {"mrr@10": 1.0}
    assert evaluate(qrels, run, ["mrr@10"], ignore_identical_ids=False) == {"mrr@10": 0.5}
    assert run == {"q1": {"q1": 9.0, "a": 1.0}}  # input left untouched


@pytest.mark.parametrize(
    "name", ["ndcg", "ndcg@0", "mrr@-1", "recall@k", "NDCG@10", "hits@10", "map@", "p@5", ""]
)
def test_unknown_metric_names_list_the_valid_forms(name: str) -> None:
    with pytest.raises(ValueError, match=r"valid forms: 'ndcg@K', 'mrr@K'.*'map', 'map@K'"):
        parse_metric(name)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate({"q": {"a": 1}}, {}, ["ndcg@10", name])


def test_no_relevant_query_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="no query in qrels"):
        evaluate({"q": {"a": 0}}, {"q": {"a": 1.0}})


def test_nan_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "b": float("nan")}})
    with pytest.raises(ValueError, match="NaN"):
        trec_order({"a": float("nan")})
