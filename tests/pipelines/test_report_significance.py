"""The run report's re-ranking section: each re-ranked run file evaluate wrote, against the final
retriever's, with figures that pytrec_eval's per-query nDCG@10 reproduces; absent where the run
has no re-ranking or no qrels."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import pytrec_eval

from pipelines.run_report import build_report
from retrieval.metrics import write_trec_run
from retrieval.metrics.significance import compare_per_query
from retrieval.tables import QRELS
from retrieval.tables.store import write_table

DOCS = [f"d{i}" for i in range(20)]


def _runs(seed: int = 3) -> tuple[dict, dict, dict]:
    rng = random.Random(seed)
    qrels = {f"q{i}": {d: 1 for d in rng.sample(DOCS, 2)} for i in range(30)}
    retriever = {q: {d: rng.random() for d in DOCS} for q in qrels}
    # the re-ranker lifts one relevant doc of most queries, so it wins on most of them
    reranked = {
        q: {d: s + (1.0 if d in qrels[q] and rng.random() < 0.8 else 0.0) for d, s in run.items()}
        for q, run in retriever.items()
    }
    return qrels, retriever, reranked


def _run_dir(tmp_path: Path, qrels: dict, runs: dict[str, dict], metrics: dict) -> Path:
    run_dir = tmp_path / "run"
    rows = [
        {"qid": q, "pid": d, "relevance": r} for q, docs in qrels.items() for d, r in docs.items()
    ]
    write_table(run_dir / "prepare" / "qrels-dev", rows, QRELS)
    (run_dir / "evaluate").mkdir(parents=True)
    (run_dir / "evaluate" / "metrics.json").write_text(json.dumps(metrics))
    for name, run in runs.items():
        write_trec_run(run, run_dir / "evaluate" / f"run-{name}.trec")
    return run_dir


def _ndcg(qrels: dict, run: dict) -> dict[str, dict[str, float]]:
    found = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return {q: {"ndcg@10": found[q]["ndcg_cut_10"]} for q in qrels}


def test_report_compares_each_reranked_run_with_the_retriever(tmp_path, capsys):
    qrels, retriever, reranked = _runs()
    metrics = {"train_dual_2": {"ndcg@10": 0.1}, "train_joint": {"rerank_ndcg@10": 0.2}}
    runs = {"train_dual_2": retriever, "train_joint": retriever, "rerank": reranked}
    run_dir = _run_dir(tmp_path, qrels, runs, metrics)

    report = build_report(run_dir, [{"stage": "evaluate", "status": "done"}], {}, "dev")

    text = report.read_text()
    reference = compare_per_query(_ndcg(qrels, retriever), _ndcg(qrels, reranked), "ndcg@10")
    assert reference.difference > 0 and reference.p_value < 0.05  # the planted gain is found
    assert "## Re-ranking against the retriever, query by query" in text
    assert "against train_joint's order" in text and "(30 queries)" in text
    assert f"| re-ranked | {reference.cells()} |" in text
    assert "+ RRF" not in text  # no such run file here: no row
    assert f"| re-ranked | {reference.cells()} |" in capsys.readouterr().out


@pytest.mark.parametrize("missing", ["rerank metrics", "qrels", "retriever run"])
def test_no_section_without_what_it_compares(tmp_path, missing):
    qrels, retriever, reranked = _runs()
    metrics = {"train_joint": {"ndcg@10": 0.1, "rerank_ndcg@10": 0.2}}
    if missing == "rerank metrics":
        metrics = {"train_joint": {"ndcg@10": 0.1}}
    runs = {"train_joint": retriever, "rerank": reranked}
    if missing == "retriever run":
        runs.pop("train_joint")
    run_dir = _run_dir(tmp_path, qrels, runs, metrics)
    if missing == "qrels":
        for shard in (run_dir / "prepare" / "qrels-dev").iterdir():
            shard.unlink()
        (run_dir / "prepare" / "qrels-dev").rmdir()

    report = build_report(run_dir, [{"stage": "evaluate", "status": "done"}], {}, "dev")

    assert "query by query" not in report.read_text()
