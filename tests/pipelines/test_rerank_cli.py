"""`rqa rerank` on a TREC run file with a tiny random cross-encoder, checked against scoring the
same pairs directly with retrieval.rerank.score_pairs, and `--fuse rrf` against reciprocal rank
fusion written out here (1 / (60 + rank) summed over the two rankings).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from pipelines.cli import main
from retrieval.models import CrossEncoder
from retrieval.rerank import score_pairs

DEPTH = 4
# (title, text): half the passages have a title, so title handling is part of the check
DOCS = {
    f"d{i}": (f"Title {i}" if i % 2 else "", text)
    for i, text in enumerate(
        [
            "Aspirin lowers fever by blocking prostaglandins.",
            "Vitamin C does not prevent the common cold in most people.",
            "Sleep consolidates memory in the hippocampus.",
            "Coffee intake and the risk of heart disease.",
            "Exercise improves insulin sensitivity in adults.",
            "Statins reduce cholesterol and cardiovascular events.",
            "Antibiotics do not help viral infections.",
            "Smoking is the leading cause of lung cancer.",
            "Fluoride in water reduces tooth decay.",
        ]
    )
}
QUERIES = {
    "q1": "does aspirin reduce fever",
    "q2": "is sleep good for memory",
    "q3": "what causes lung cancer",
}
QRELS = {"q1": {"d0": 1}, "q2": {"d2": 1}, "q3": {"d7": 2, "d5": 1}}


def rqa(*args) -> int:
    return main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rerank") / "beir"
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for pid, (title, text) in DOCS.items():
            f.write(json.dumps({"_id": pid, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for qid, text in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    rows = [f"{q}\t{p}\t{r}" for q, judged in QRELS.items() for p, r in judged.items()]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows))
    return folder


@pytest.fixture(scope="module")
def cross_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    """The tiny BERT with a 1-logit head, saved once so every load scores the same."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("cross") / "model"
    CrossEncoder.from_pretrained(tiny_bert_dir).save(folder)
    return folder


@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    """q1 with 7 docs, q2 with 3 (fewer than DEPTH), q3 with 5 of which two tie in score."""
    rng = random.Random(0)
    lines = []
    for qid, n in (("q1", 7), ("q2", 3), ("q3", 5)):
        pids = rng.sample(sorted(DOCS), n)
        scores = [round(rng.uniform(0, 10), 3) for _ in pids]
        if qid == "q3":
            scores[1] = scores[2]  # a tie: trec_eval order puts the larger docid first
        ranked = sorted(zip(pids, scores), key=lambda x: x[1], reverse=True)
        lines += [f"{qid} Q0 {p} {r} {s} bm25" for r, (p, s) in enumerate(ranked, 1)]
    path = tmp_path_factory.mktemp("runs") / "run.trec"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_run(path: Path) -> dict[str, list[tuple[str, float, int, str]]]:
    """``{qid: [(pid, score, rank, tag), ...]}`` in file order, parsed here."""
    out: dict[str, list] = {}
    for line in path.read_text().splitlines():
        qid, q0, pid, rank, score, tag = line.split(" ")
        assert q0 == "Q0"
        out.setdefault(qid, []).append((pid, float(score), int(rank), tag))
    return out


def top_by_trec_order(run: dict, depth: int) -> dict[str, list[str]]:
    """Each query's first ``depth`` docs by score, ties broken by docid descending."""
    return {
        q: [p for p, s, _, _ in sorted(rows, key=lambda x: (x[1], x[0]), reverse=True)][:depth]
        for q, rows in run.items()
    }


def direct_scores(cross_dir: Path, top: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    model = CrossEncoder.from_pretrained(cross_dir)
    pairs = [(q, p) for q, pids in top.items() for p in pids]
    logits = score_pairs(
        model,
        [QUERIES[q] for q, _ in pairs],
        [DOCS[p][0] for _, p in pairs],
        [DOCS[p][1] for _, p in pairs],
        batch_size=2,
        show_progress=False,
    )
    out: dict[str, dict[str, float]] = {}
    for (q, p), logit in zip(pairs, logits):
        out.setdefault(q, {})[p] = float(logit)
    return out


def test_rerank_matches_scoring_the_pairs_directly(beir, cross_dir, run_file, tmp_path):
    out = tmp_path / "out" / "reranked.trec"

    code = rqa("rerank", "--cross-encoder", cross_dir, "--run", run_file, "--beir", beir,
               "--depth", DEPTH, "--out", out, "--batch-size", 3)  # fmt: skip

    assert code == 0
    got = read_run(out)
    expected = direct_scores(cross_dir, top_by_trec_order(read_run(run_file), DEPTH))
    assert set(got) == set(expected)
    for qid, rows in got.items():
        assert {p for p, *_ in rows} == set(expected[qid])  # the top DEPTH, and only them
        assert [r for _, _, r, _ in rows] == list(range(1, len(rows) + 1))
        assert all(tag == "rqa-rerank" for *_, tag in rows)
        for pid, score, _, _ in rows:
            assert score == pytest.approx(expected[qid][pid], abs=1e-5)
        scores = [s for _, s, _, _ in rows]
        assert scores == sorted(scores, reverse=True)
    assert len(got["q2"]) == 3 and all(len(got[q]) == DEPTH for q in ("q1", "q3"))
    assert [p.name for p in out.parent.iterdir()] == ["reranked.trec"]  # no temporary file left


def test_fuse_rrf_is_reciprocal_rank_fusion_of_the_two_orders(beir, cross_dir, run_file, tmp_path):
    plain, fused = tmp_path / "plain.trec", tmp_path / "fused.trec"
    common = ("--cross-encoder", cross_dir, "--run", run_file, "--beir", beir, "--depth", DEPTH)
    assert rqa("rerank", *common, "--out", plain) == 0
    assert rqa("rerank", *common, "--out", fused, "--fuse", "rrf", "--tag", "rrf") == 0

    top = top_by_trec_order(read_run(run_file), DEPTH)
    reranked = {q: [p for p, *_ in rows] for q, rows in read_run(plain).items()}
    got = read_run(fused)
    for qid, pids in top.items():
        rrf = {
            p: 1 / (60 + pids.index(p) + 1) + 1 / (60 + reranked[qid].index(p) + 1) for p in pids
        }
        order = sorted(rrf, key=lambda p: (rrf[p], p), reverse=True)
        assert [p for p, *_ in got[qid]] == order
        for pid, score, _, tag in got[qid]:
            assert score == pytest.approx(rrf[pid], abs=1e-12) and tag == "rrf"


def test_corpus_and_queries_files_without_qrels(beir, cross_dir, run_file, tmp_path):
    """MS MARCO-style text files (no qrels needed) give the run that the BEIR folder gives."""
    collection, queries = tmp_path / "collection.tsv", tmp_path / "queries.tsv"
    collection.write_text("".join(f"{p}\t{f'{t} {x}'.strip()}\n" for p, (t, x) in DOCS.items()))
    queries.write_text("".join(f"{q}\t{text}\n" for q, text in QUERIES.items()))
    common = ("--cross-encoder", cross_dir, "--run", run_file, "--depth", DEPTH)

    assert rqa("rerank", *common, "--beir", beir, "--out", tmp_path / "a.trec") == 0
    code = rqa("rerank", *common, "--corpus", collection, "--queries", queries,
               "--out", tmp_path / "b.trec")  # fmt: skip

    assert code == 0
    a, b = read_run(tmp_path / "a.trec"), read_run(tmp_path / "b.trec")
    assert {q: [p for p, *_ in rows] for q, rows in a.items()} == {
        q: [p for p, *_ in rows] for q, rows in b.items()
    }


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown query", "r.trec: field 'qid': 1 qids not in the inputs' queries-test: q9"),
        ("unknown doc", "r.trec: field 'pid': 1 pids not in the inputs' corpus: zz"),
        ("missing model", "--cross-encoder"),
        ("missing run", "file not found"),
        ("bad depth", "--depth must be a positive integer"),
        ("bad line", "expected 6 fields"),
    ],
)
def test_errors_are_one_line_and_write_nothing(beir, cross_dir, tmp_path, capsys, case, message):
    lines = {
        "unknown query": "q1 Q0 d1 1 2.0 x\nq9 Q0 d2 1 1.0 x\n",
        "unknown doc": "q1 Q0 zz 1 2.0 x\n",
        "bad line": "q1 Q0 d1 1 2.0\n",
    }.get(case, "q1 Q0 d1 1 2.0 x\n")
    run = write(tmp_path / "r.trec", lines)
    model = tmp_path / "no-model" if case == "missing model" else cross_dir
    run = tmp_path / "no-run.trec" if case == "missing run" else run
    depth = 0 if case == "bad depth" else 5
    out = tmp_path / "out"

    code = rqa("rerank", "--cross-encoder", model, "--run", run, "--beir", beir,
               "--depth", depth, "--out", out / "x.trec")  # fmt: skip

    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("rqa rerank: error: ") and message in err
    assert not out.exists()
