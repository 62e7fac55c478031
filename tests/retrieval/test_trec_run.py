"""TREC run and qrels files: round trips, trec_eval rank order, and pytrec_eval's own parsers.

Holds tests of retrieval.metrics.trec_run only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytrec_eval

from retrieval.metrics import (
    evaluate,
    read_trec_qrels,
    read_trec_run,
    trec_order,
    write_trec_qrels,
    write_trec_run,
)
from retrieval.tables import DataError
from tests.retrieval.random_runs import random_case

MEASURES = {"ndcg_cut.10", "recall.100", "map", "recip_rank"}


def test_lines_are_ranked_in_trec_eval_order(tmp_path: Path) -> None:
    run = {"q2": {"d1": 0.5, "d10": 0.5, "d2": 0.5, "d3": 0.75}, "q1": {"x": 1e-05}}
    path = tmp_path / "run.trec"
    write_trec_run(run, path, tag="bm25")
    assert path.read_text().splitlines() == [
        "q2 Q0 d3 1 0.75 bm25",
        "q2 Q0 d2 2 0.5 bm25",
        "q2 Q0 d10 3 0.5 bm25",
        "q2 Q0 d1 4 0.5 bm25",
        "q1 Q0 x 1 1e-05 bm25",
    ]
    write_trec_run(run, path, depth=2)
    assert [line.split()[2] for line in path.read_text().splitlines()] == ["d3", "d2", "x"]


@pytest.mark.parametrize("seed", range(5))
def test_run_round_trip_and_pytrec_eval_agrees(tmp_path: Path, seed: int) -> None:
    qrels, run = random_case(seed)
    run["q_float32"] = {"d1": float.fromhex("0x1.99999ap-4"), "d2": 1 / 3}  # odd binary values
    run_path, qrels_path = tmp_path / "run.trec", tmp_path / "qrels.trec"
    write_trec_run(run, run_path)
    write_trec_qrels(qrels, qrels_path)

    back = read_trec_run(run_path)
    assert back == {qid: scores for qid, scores in run.items() if scores}  # empty queries vanish
    assert read_trec_qrels(qrels_path) == qrels
    for qid, scores in back.items():
        ranks = [
            int(line.split()[3])
            for line in run_path.read_text().splitlines()
            if line.split()[0] == qid
        ]
        assert ranks == list(range(1, len(scores) + 1))
        assert list(scores) == trec_order(run[qid])  # file order is the trec_eval order

    # pytrec_eval's own parsers read our files, and score them as it scores the in-memory dicts
    with open(run_path) as f_run, open(qrels_path) as f_qrels:
        parsed_run, parsed_qrels = pytrec_eval.parse_run(f_run), pytrec_eval.parse_qrel(f_qrels)
    assert parsed_run == back and parsed_qrels == qrels
    original = pytrec_eval.RelevanceEvaluator(qrels, MEASURES).evaluate(run)
    from_file = pytrec_eval.RelevanceEvaluator(parsed_qrels, MEASURES).evaluate(parsed_run)
    assert from_file == {qid: row for qid, row in original.items() if qid in back}
    names = ["ndcg@10", "recall@100", "map", "mrr@1000"]
    assert evaluate(qrels, back, names) == evaluate(qrels, run, names)


def test_reading_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.trec"
    path.write_text("q1 Q0 d1 1 0.5 t\n\nq1 Q0 d2 2 t\n")
    with pytest.raises(DataError, match=r"bad\.trec:3: expected 6 fields"):
        read_trec_run(path)
    path.write_text("q1 Q0 d1 1 high t\n")
    with pytest.raises(DataError, match=r":1: field 'score'"):
        read_trec_run(path)
    path.write_text("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n")
    with pytest.raises(DataError, match="appears twice"):
        read_trec_run(path)
    path.write_text("q1 0 d1 yes\n")
    with pytest.raises(DataError, match=r":1: field 'rel'"):
        read_trec_qrels(path)


def test_ids_with_whitespace_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run({"q 1": {"d1": 1.0}}, tmp_path / "run.trec")
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_qrels({"q1": {"d\t1": 1}}, tmp_path / "qrels.trec")
    with pytest.raises(ValueError, match="depth"):
        write_trec_run({"q1": {"d1": 1.0}}, tmp_path / "run.trec", depth=0)
