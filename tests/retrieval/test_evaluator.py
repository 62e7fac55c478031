"""evaluate_retriever end to end on tiny real data, checked against independent references:
pytrec_eval for the ranking metrics (BEIR-style, a mean over judged queries), and answer
matching written out here for NQ's answer recall.
"""

from __future__ import annotations

import re

import pytest
import pytrec_eval

from retrieval.evaluator import DEFAULT_METRICS, evaluate_retriever
from retrieval.models import DualEncoder
from retrieval.tables.readers import prepare_beir, prepare_nq
from tests.helpers_data import (
    NQ_PASSAGES,
    NQ_QUESTIONS,
    read_beir_qrels,
    write_nq_files,
    write_scifact_slice,
)

PYTREC_OF = {
    "ndcg@10": "ndcg_cut_10",
    "recall@10": "recall_10",
    "recall@100": "recall_100",
    "map": "map",
}


@pytest.fixture(scope="module")
def model(tiny_bert_dir) -> DualEncoder:
    return DualEncoder.from_pretrained(tiny_bert_dir)


@pytest.fixture(scope="module")
def scifact(scifact_dir, tmp_path_factory):
    """(raw BEIR slice, its prepared tables)."""
    root = tmp_path_factory.mktemp("scifact")
    beir = write_scifact_slice(scifact_dir, root / "beir")
    prepare_beir(beir, root / "tables")
    return beir, root / "tables"


def trec_top(scores: dict[str, float], k: int) -> dict[str, float]:
    """The first ``k`` docs in trec_eval's order (score descending, then docid descending)."""
    ranked = sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return dict(ranked[:k])


def pytrec_means(qrels, run, measure: str) -> tuple[float, int]:
    """pytrec_eval's per-query values of one measure, averaged as BEIR does; and the count."""
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate(run)
    values = [row[measure] for row in per_query.values()]
    return sum(values) / len(values), len(values)


def test_beir_metrics_equal_pytrec_eval(model, scifact):
    beir, tables = scifact
    qrels = read_beir_qrels(beir)  # from the raw file, not from the tables under test

    result = evaluate_retriever(model, tables, "dev", metrics=(*DEFAULT_METRICS, "map"))

    assert list(result.metrics) == [*DEFAULT_METRICS, "map"]
    assert set(result.run) == set(qrels) and len(qrels) == 50  # the excerpt's dev queries
    assert all(len(scores) == 100 for scores in result.run.values())
    for name, measure in PYTREC_OF.items():
        expected, judged = pytrec_means(qrels, result.run, measure)
        assert judged == 50
        assert result.metrics[name] == pytest.approx(expected, abs=1e-9), name
    # pytrec_eval's recip_rank has no cut-off: give it the top 10 only.
    top10 = {qid: trec_top(scores, 10) for qid, scores in result.run.items()}
    expected_mrr, _ = pytrec_means(qrels, top10, "recip_rank")
    assert result.metrics["mrr@10"] == pytest.approx(expected_mrr, abs=1e-9)
    assert 0 < result.metrics["ndcg@10"] < 1  # a random model, yet not a degenerate run


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (enough for the ASCII texts of these tests)."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def holds_answer(answers: list[str], body: str) -> bool:
    tokens = words(body)
    for answer in map(words, answers):
        if any(tokens[i : i + len(answer)] == answer for i in range(len(tokens))):
            return True
    return False


def test_nq_answer_recall_from_the_run(model, tmp_path):
    psgs, qa = write_nq_files(tmp_path / "raw")
    prepare_nq(tmp_path / "tables", passages=psgs, qa={"dev": qa})

    result = evaluate_retriever(model, tmp_path / "tables", "dev")

    ks = (1, 5, 20, 100)
    assert list(result.metrics) == [f"answer_recall@{k}" for k in ks]
    bodies = {pid: text for pid, text, _ in NQ_PASSAGES}
    first_hit = []
    for row, (_, answers) in enumerate(NQ_QUESTIONS):
        scores = result.run[f"dev-{row}"]  # qa.csv questions are dev-0, dev-1, ... in file order
        ranked = sorted(scores, key=scores.get, reverse=True)
        assert len(ranked) == len(NQ_PASSAGES)  # k=100 > 24 passages: all are retrieved
        hits = [rank for rank, pid in enumerate(ranked, 1) if holds_answer(answers, bodies[pid])]
        first_hit.append(hits[0] if hits else None)
    for k in ks:
        found = sum(1 for rank in first_hit if rank is not None and rank <= k)
        assert result.metrics[f"answer_recall@{k}"] == pytest.approx(found / len(NQ_QUESTIONS))
    # Every passage is retrieved, so at 100 only two questions miss: "Lyon" is nowhere, and
    # "Zanzibar" is only a title, which DPR's rule does not look at.
    assert result.metrics["answer_recall@100"] == pytest.approx(10 / 12)


def test_nq_answer_recall_depths_stop_at_k(model, tmp_path):
    psgs, qa = write_nq_files(tmp_path / "raw")
    prepare_nq(tmp_path / "tables", passages=psgs, qa={"dev": qa})

    result = evaluate_retriever(model, tmp_path / "tables", "dev", k=5)

    assert list(result.metrics) == ["answer_recall@1", "answer_recall@5"]
    assert all(len(scores) == 5 for scores in result.run.values())


def test_split_without_judgments_is_an_error(model, scifact):
    _, tables = scifact
    with pytest.raises(FileNotFoundError, match="no qrels-test or answers-test"):
        evaluate_retriever(model, tables, "test")
