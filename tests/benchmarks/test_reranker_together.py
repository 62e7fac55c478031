"""benchmarks/reranker.py's "together" table: two re-rankers' z-scored logits averaged, and RRF
of both with the retriever, checked against the arithmetic written out on a two-query toy run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO / "benchmarks"))  # the scripts import their siblings by name

import reranker  # noqa: E402

RRF_K = 60  # retrieval.fusion's constant, written out


def test_z_scored_is_per_query_mean_and_population_std():
    z = reranker.z_scored({"q": {"a": 1.0, "b": 3.0}, "flat": {"x": 2.0, "y": 2.0}})
    assert z["q"] == pytest.approx({"a": -1.0, "b": 1.0})  # mean 2, std 1
    assert z["flat"] == {"x": 0.0, "y": 0.0}  # equal scores: no division by zero


def test_together_rows_average_z_scores_and_fuse_every_order_with_the_retriever():
    # the retriever ranks d1 > d2 > d3; re-ranker A puts d3 first, B puts d2 first
    top = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    logits = {"A": {"q": {"d1": 0.0, "d2": 1.0, "d3": 5.0}},
              "B": {"q": {"d1": 0.0, "d2": 10.0, "d3": 9.0}}}  # fmt: skip
    qrels = {"q": {"d2": 1}}
    rows = reranker.together_rows("final", top, logits, qrels)
    name, crosses, depth, alone, fused = rows[0]
    assert (name, crosses, depth) == ("final", "A + B", 10)
    # z-scores: A (0, 1, 5): mean 2, std sqrt(14/3); B (0, 10, 9): mean 19/3, std sqrt(614/9)
    za = {d: (x - 2) / (14 / 3) ** 0.5 for d, x in logits["A"]["q"].items()}
    zb = {d: (x - 19 / 3) / (614 / 9) ** 0.5 for d, x in logits["B"]["q"].items()}
    mean = {d: (za[d] + zb[d]) / 2 for d in za}
    assert max(mean, key=mean.get) == "d3"  # A's margin outweighs B's once both are scaled
    rank_of_d2 = sorted(mean, key=mean.get, reverse=True).index("d2") + 1
    assert alone == pytest.approx(
        round(1 / math.log2(rank_of_d2 + 1), 4)
    )  # one relevant: 1/log2(r+1)
    # RRF: d2 is 2nd for the retriever, 2nd for A, 1st for B; d3 3rd, 1st, 2nd; d1 1st, 3rd, 3rd
    rrf = {"d1": 1 / 61 + 1 / 63 + 1 / 63, "d2": 1 / 62 + 1 / 62 + 1 / 61,
           "d3": 1 / 63 + 1 / 61 + 1 / 62}  # fmt: skip
    assert max(rrf, key=rrf.get) == "d2"
    assert fused == 1.0  # d2 on top; without the retriever's order d2 and d3 would tie
    assert all(row[2] in reranker.DEPTHS for row in rows)


def test_together_rows_cut_each_order_to_the_depth():
    top = {"q": {f"d{i}": float(20 - i) for i in range(20)}}  # d0 first ... d19 last
    lift = {"q": {f"d{i}": (100.0 if i == 15 else 0.0) for i in range(20)}}  # only d15 lifted
    rows = reranker.together_rows("final", top, {"A": lift, "B": lift}, {"q": {"d15": 1}})
    by_depth = {row[2]: row for row in rows}
    assert by_depth[10][3] == 0.0  # d15 is outside the top 10: nothing to lift
    assert by_depth[20][3] == 1.0  # inside the top 20: both re-rankers put it first
