"""A stage is a plain function of (config, resolved inputs) -> output folder: called here with
hand-made inputs, without the runner, Ray or the CLI."""

from __future__ import annotations

import pytest

from pipelines.config import PipelineConfig
from pipelines.stages import denoise, prepare
from pipelines.stages.context import StageContext
from retrieval.models import CrossEncoder
from retrieval.rerank import score_pairs
from retrieval.tables.schemas import CORPUS, EXAMPLES, QUERIES
from retrieval.tables.store import read_manifest, read_table, write_table

PASSAGES = {
    "p1": ("Aspirin", "Aspirin lowers the risk of a second heart attack."),
    "p2": ("Heart", "The heart pumps blood through the body."),
    "p3": ("Cycling", "Cycling to work is good exercise."),
    "p4": ("Aspirin dose", "Low-dose aspirin is taken daily after a heart attack."),
    "p5": ("Rivers", "The Nile is a long river."),
}


def config_for(tmp_path, **stages) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"name": "alone", "model": "m", "data": {"beir": str(tmp_path)}, "stages": stages}
    )


def test_prepare_runs_on_a_data_folder_alone(tmp_path, scifact_dir):
    config = config_for(tmp_path)
    config.data.max_corpus = 20
    ctx = StageContext("prepare", config, tmp_path / "out", tmp_path / "work",
                       {"data": scifact_dir})  # fmt: skip
    rows = prepare.run(ctx)
    judged = {
        p
        for s in ("train", "dev")
        for p in read_table(tmp_path / "out" / f"qrels-{s}")["pid"].to_pylist()
    }
    assert rows["corpus"] == read_manifest(tmp_path / "out" / "corpus")["rows"]
    assert len(judged) <= rows["corpus"] <= len(judged) + 20  # judged passages + 20 others
    assert {"queries-train", "queries-dev", "qrels-dev"} <= set(rows)


def test_denoise_runs_on_hand_made_tables_alone(tmp_path, tiny_bert_dir):
    corpus, queries, examples = (tmp_path / n for n in ("corpus", "queries", "examples"))
    write_table(corpus, [{"pid": p, "title": t, "text": x} for p, (t, x) in PASSAGES.items()],
                CORPUS)  # fmt: skip
    write_table(queries, [{"qid": "q1", "text": "does aspirin prevent heart attacks"}], QUERIES)
    mined = ["p2", "p3", "p4", "p5"]
    write_table(examples, [{"qid": "q1", "query": "does aspirin prevent heart attacks",
                            "positives": ["p1"], "negatives": mined}], EXAMPLES)  # fmt: skip
    config = config_for(tmp_path, denoise={"mode": "relative", "margin": 0.0, "undenoised": 1})
    config.precision = "fp32"  # as the reference below: "auto" is bf16 on a CPU with AVX512-BF16
    CrossEncoder.from_pretrained(tiny_bert_dir).save(tmp_path / "cross")  # one fixed head
    inputs = {"corpus": corpus, "queries": queries, "examples": examples,
              "cross_model": tmp_path / "cross"}  # fmt: skip
    ctx = StageContext("denoise", config, tmp_path / "out", tmp_path / "work", inputs)

    metrics = denoise.run(ctx)

    model = CrossEncoder.from_pretrained(tmp_path / "cross")
    pids = ["p1", *mined]
    logits = score_pairs(model, ["does aspirin prevent heart attacks"] * 5,
                         [PASSAGES[p][0] for p in pids], [PASSAGES[p][1] for p in pids],
                         show_progress=False)  # fmt: skip
    by_pid = dict(zip(pids, logits.tolist()))
    expected = [p for p in mined if by_pid[p] < by_pid["p1"]]
    kept = read_table(tmp_path / "out" / "examples-train")["negatives"][0].as_py()
    assert kept == expected
    # the teacher scores margin_mse distils: the same re-ranker's logits, beside their passages
    scored = read_table(tmp_path / "out" / "examples-train").to_pylist()[0]
    assert scored["positive_scores"] == pytest.approx([by_pid["p1"]], abs=1e-4)
    assert scored["negative_scores"] == pytest.approx([by_pid[p] for p in expected], abs=1e-4)
    assert metrics["denoised_negatives"] == len(expected)
    joint = read_table(tmp_path / "out" / "examples-joint-train")["negatives"][0].as_py()
    assert joint == list(dict.fromkeys(expected + mined[:1]))
    assert (
        metrics["dropped_false_negatives"]
        == len(mined) - len(expected)
        == pytest.approx(sum(by_pid[p] >= by_pid["p1"] for p in mined))
    )


def test_denoise_streams_in_chunks_with_the_same_result(tmp_path, tiny_bert_dir, monkeypatch):
    """Scoring a chunk of examples at a time (memory bounded by the chunk) decides exactly as
    scoring them all at once."""
    corpus, queries, examples = (tmp_path / n for n in ("corpus", "queries", "examples"))
    write_table(corpus, [{"pid": p, "title": t, "text": x} for p, (t, x) in PASSAGES.items()],
                CORPUS)  # fmt: skip
    texts = {"q1": "does aspirin prevent heart attacks", "q2": "how long is the nile",
             "q3": "is cycling exercise"}  # fmt: skip
    write_table(queries, [{"qid": q, "text": t} for q, t in texts.items()], QUERIES)
    positives = {"q1": "p1", "q2": "p5", "q3": "p3"}
    rows = [{"qid": q, "query": texts[q], "positives": [positives[q]],
             "negatives": [p for p in PASSAGES if p != positives[q]]} for q in texts]  # fmt: skip
    write_table(examples, rows, EXAMPLES, shard_rows=2)  # two shards
    CrossEncoder.from_pretrained(tiny_bert_dir).save(tmp_path / "cross")
    config = config_for(tmp_path, denoise={"mode": "relative", "margin": 0.0, "undenoised": 2})
    inputs = {"corpus": corpus, "queries": queries, "examples": examples,
              "cross_model": tmp_path / "cross"}  # fmt: skip
    outputs = []
    for name, chunk in (("whole", 10_000), ("chunked", 1)):
        monkeypatch.setattr(denoise, "CHUNK_QUERIES", chunk)
        ctx = StageContext("denoise", config, tmp_path / name, tmp_path / f"work-{name}", inputs)
        metrics = denoise.run(ctx)
        tables = [read_table(tmp_path / name / t).to_pylist()
                  for t in ("examples-train", "examples-joint-train")]  # fmt: skip
        outputs.append((metrics, tables))
    assert outputs[0] == outputs[1]
    assert outputs[0][0]["mined_negatives"] == 12
