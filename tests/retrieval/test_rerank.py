"""Cross-encoder re-ranking with a tiny random model, checked against scoring each pair alone."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest
import torch

from retrieval.models import CrossEncoder
from retrieval.rerank import candidates_to_run, rerank, score_pairs
from retrieval.tables import CANDIDATES, CORPUS, QUERIES, DataError, write_table

PASSAGES = {  # pid: (title, text), of very different lengths so batches need padding
    "p0": ("Cats", "Cats sleep most of the day."),
    "p1": (None, "Dogs bark."),
    "p2": ("", "A long passage about the migration of birds across continents, " * 4),
    "p3": ("Physics", "Quantum entanglement links the states of distant particles."),
    "p4": ("Cooking", "Bread needs flour, water, salt and yeast, and time to rise."),
    "p5": ("Sports", "The marathon is 42.195 kilometres long."),
    "p6": ("Music", "A fugue develops one theme in several voices."),
}
QUERIES_TEXT = {"qa": "why do cats sleep so much", "qb": "how long is a marathon", "qc": "yeast"}


@pytest.fixture(scope="module")
def model(tiny_bert_dir) -> CrossEncoder:
    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(tiny_bert_dir, max_len=64).eval()
    with torch.no_grad():  # at their default init (std 0.02) logits differ by only ~1e-5
        model.model.bert.pooler.dense.weight.normal_(0.0, 1.0)
        model.model.classifier.weight.normal_(0.0, 1.0)
    return model


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    rows = [{"pid": p, "title": t, "text": x} for p, (t, x) in PASSAGES.items()]
    write_table(root / "corpus", rows, CORPUS, shard_rows=3)
    queries = [{"qid": q, "text": t} for q, t in QUERIES_TEXT.items()]
    write_table(root / "queries", queries, QUERIES, shard_rows=2)
    return root


def alone(model: CrossEncoder, query: str, pid: str) -> float:
    """The logit of one pair, tokenized and run on its own (no padding at all)."""
    title, text = PASSAGES[pid]
    with torch.inference_mode():
        return float(model(model.tokenize([query], [title], [text]))[0])


def pairs():
    return [(q, p) for q in QUERIES_TEXT.values() for p in PASSAGES]


def test_score_pairs_equals_scoring_alone(model):
    queries, pids = zip(*pairs())
    titles = [PASSAGES[p][0] for p in pids]
    texts = [PASSAGES[p][1] for p in pids]
    got = score_pairs(model, list(queries), titles, texts, batch_size=4, show_progress=False)
    expected = np.array([alone(model, q, p) for q, p in pairs()])
    assert got.dtype == np.float32 and got.shape == (len(expected),)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.ptp(expected) > 1e-3  # the random model does tell pairs apart

    perm = np.random.default_rng(0).permutation(len(expected))
    shuffled = score_pairs(
        model,
        [queries[i] for i in perm],
        [titles[i] for i in perm],
        [texts[i] for i in perm],
        batch_size=3,
        show_progress=False,
    )
    np.testing.assert_allclose(shuffled, got[perm], atol=1e-5, rtol=0)
    assert score_pairs(model, [], [], [], show_progress=False).shape == (0,)


def test_rerank_orders_by_logit_and_truncates(model, tables):
    incoming = {  # qid: candidates in the first stage's order
        "qa": ["p3", "p0", "p2", "p5", "p1", "p6"],
        "qb": ["p5", "p4"],  # fewer than depth
        "qc": [],  # none at all
    }
    candidates = pa.table(
        {
            "qid": list(incoming),
            "pids": list(incoming.values()),
            "scores": [
                list(np.linspace(1, 0, len(v), dtype=np.float32)) for v in incoming.values()
            ],
        },
        schema=CANDIDATES,
    )
    depth = 4
    out = rerank(
        model,
        candidates,
        tables / "corpus",
        tables / "queries",
        depth,
        batch_size=3,
        show_progress=False,
        chunk_queries=2,
    )
    assert out.schema.equals(CANDIDATES)
    assert out["qid"].to_pylist() == ["qa", "qb", "qc"]
    for row in out.to_pylist():
        top = incoming[row["qid"]][:depth]
        logits = {p: alone(model, QUERIES_TEXT[row["qid"]], p) for p in top}
        expected = sorted(top, key=lambda p: -logits[p])
        gaps = -np.diff([logits[p] for p in expected])
        assert np.all(gaps > 1e-4)  # far above float noise (~1e-6): the order is well defined
        assert row["pids"] == expected
        np.testing.assert_allclose(row["scores"], [logits[p] for p in expected], atol=1e-5)
    assert len(out["pids"][0]) == depth and out["pids"][2].as_py() == []

    run = candidates_to_run(out)
    assert list(run["qb"]) == out["pids"][1].as_py()
    assert run["qc"] == {}
    assert run["qa"][out["pids"][0][0].as_py()] == pytest.approx(out["scores"][0][0].as_py())


def test_rerank_reports_unknown_ids(model, tables):
    bad_pid = pa.table({"qid": ["qa"], "pids": [["p0", "nope"]], "scores": [[2.0, 1.0]]})
    with pytest.raises(DataError, match="nope"):
        rerank(model, bad_pid.cast(CANDIDATES), tables / "corpus", tables / "queries", 5)
    bad_qid = pa.table({"qid": ["zz"], "pids": [["p0"]], "scores": [[1.0]]})
    with pytest.raises(DataError, match="zz"):
        rerank(model, bad_qid.cast(CANDIDATES), tables / "corpus", tables / "queries", 5)
    with pytest.raises(ValueError):
        rerank(model, bad_qid.cast(CANDIDATES), tables / "corpus", tables / "queries", 0)


def test_bf16_scoring_keeps_the_order_and_leaves_the_model_in_fp32():
    """bf16 logits stay within bf16 rounding of fp32 ones, every two passages of a query that
    fp32 tells apart (by more than that rounding) keep their order, and the caller's model is
    not cast. On all-MiniLM-L6-v2 with a seeded head: a random tiny BERT scores every pair
    within 0.1 of every other, so no order would be tested there."""
    from tests.conftest import minilm_path

    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(minilm_path(), max_len=64).eval()
    with torch.no_grad():
        model.model.classifier.weight.normal_(0.0, 1.0)
    queries, pids = zip(*pairs())
    titles = [PASSAGES[p][0] for p in pids]
    texts = [PASSAGES[p][1] for p in pids]
    exact = score_pairs(model, list(queries), titles, texts, show_progress=False)
    low = score_pairs(model, list(queries), titles, texts, show_progress=False, precision="bf16")
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, exact, atol=0.05, rtol=0)
    assert not np.array_equal(low, exact)  # bf16 did run
    assert all(p.dtype == torch.float32 for p in model.parameters())
    n, compared = len(PASSAGES), 0
    for start in range(0, len(exact), n):
        e, b = exact[start : start + n], low[start : start + n]
        for i, j in itertools.permutations(range(n), 2):
            if e[i] - e[j] > 0.1:  # twice the bound on the bf16 error
                assert b[i] > b[j], (start // n, i, j, e[i], e[j], b[i], b[j])
                compared += 1
    assert compared >= len(exact)  # most pairs are far apart: the order check has teeth
