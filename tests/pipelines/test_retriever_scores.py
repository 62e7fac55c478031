"""train_cross with loss listwise_ce_kl (pipelines/stages/retriever_scores.py): every passage of
its examples gets the retriever's score from mine's list of that query (NaN for a positive the
list lacks), deep negatives and title queries included; train_cross then reads mine's lists
even without deep negatives, and its loss softens the scores by the retriever's temperature
unless the config sets one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from pipelines.config import PipelineConfig
from pipelines.stages import retriever_scores, stage_spec
from pipelines.stages.context import StageContext
from pipelines.stages.retriever_scores import scored_examples, with_scores
from pipelines.stages.spec import Output
from pipelines.stages.training import cross_examples, train_config
from retrieval.tables import CANDIDATES, CORPUS, EXAMPLES, read_table, write_table

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
LISTS = {
    "q1": {"p2": 0.9, "p1": 0.8, "p7": 0.5, "p8": 0.4},
    "q2": {"p3": 0.7, "p4": 0.6},  # q2's positive p9 is not in its list
}
ROWS = [
    {"qid": "q1", "query": "a claim", "positives": ["p1"], "negatives": ["p2", "p7"]},
    {"qid": "q2", "query": "another", "positives": ["p9"], "negatives": ["p4", "p3"]},
    {"qid": "q3", "query": "no list", "positives": ["p5"], "negatives": ["p6"]},
]


def _same(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b) for a, b in zip(got, want)
    )


def _write_lists(path: Path) -> Path:
    rows = [{"qid": q, "pids": list(s), "scores": list(s.values())} for q, s in LISTS.items()]
    write_table(path, rows, CANDIDATES, shard_rows=1)
    return path


def test_each_passage_gets_its_score_in_the_querys_list_and_nan_where_the_list_lacks_it():
    got = with_scores([dict(r) for r in ROWS], LISTS)
    nan = math.nan
    want = {"q1": ([0.8], [0.9, 0.5]), "q2": ([nan], [0.6, 0.7]), "q3": ([nan], [nan])}
    for row in got:
        assert _same(row["positive_scores"], want[row["qid"]][0]), row
        assert _same(row["negative_scores"], want[row["qid"]][1]), row


def test_scored_examples_stream_chunk_by_chunk_and_keep_the_examples(tmp_path, monkeypatch):
    monkeypatch.setattr(retriever_scores, "CHUNK_QUERIES", 1)  # one query's list at a time
    write_table(tmp_path / "examples", ROWS, EXAMPLES, shard_rows=2)
    out = scored_examples(tmp_path / "examples", _write_lists(tmp_path / "lists"), tmp_path / "o")
    got = read_table(out).to_pylist()
    assert [{k: r[k] for k in EXAMPLES.names} for r in got] == ROWS
    want = with_scores([dict(r) for r in ROWS], LISTS)
    for row, expected in zip(got, want):
        assert _same(row["positive_scores"], expected["positive_scores"])
        assert _same(row["negative_scores"], expected["negative_scores"])


def _config(**cross) -> PipelineConfig:
    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["train_cross"]["train"]["loss"] = "listwise_ce_kl"
    raw["stages"]["train_cross"].update(cross)
    return PipelineConfig.model_validate(raw)


def test_train_cross_reads_mines_lists_when_it_distils_them():
    assert stage_spec(_config(), "train_cross").reads["candidates"] == Output(
        "mine", "candidates-train"
    )


def test_the_stage_trains_on_scored_examples_with_deep_negatives_scored_too(tmp_path):
    tables = tmp_path / "tables"
    corpus = [{"pid": f"p{i}", "title": "", "text": f"passage {i}"} for i in range(10)]
    write_table(tables / "corpus", corpus, CORPUS)
    write_table(tmp_path / "examples", ROWS[:1], EXAMPLES)
    inputs = {"tables": tables, "examples": tmp_path / "examples", "model": tmp_path / "m",
              "candidates": _write_lists(tmp_path / "lists")}  # fmt: skip
    ctx = StageContext("train_cross", _config(deep_negatives=1), tmp_path / "out",
                       tmp_path / "work", inputs)  # fmt: skip
    (row,) = read_table(cross_examples(ctx)).to_pylist()
    assert row["negatives"][:2] == ["p2", "p7"] and row["negatives"][2] == "p8"  # the one left
    assert row["positive_scores"] == [pytest.approx(0.8)]
    assert row["negative_scores"] == [pytest.approx(s) for s in (0.9, 0.5, 0.4)]


@pytest.mark.parametrize("loss_args, temperature", [(None, 0.05), ({"temperature": 0.2}, 0.2)])
def test_the_loss_softens_by_the_retrievers_temperature_unless_told(
    tmp_path, loss_args, temperature
):
    config = _config()
    if loss_args:
        config.stages.train_cross.train.loss_args = loss_args
    inputs = {"tables": tmp_path, "model": tmp_path / "m"}
    ctx = StageContext("train_cross", config, tmp_path / "out", tmp_path / "work", inputs)
    train, _ = train_config(ctx, tmp_path / "examples")
    assert config.model_settings.temperature == 0.05  # configs/demo.yaml's retriever
    assert train.loss == "listwise_ce_kl" and train.loss_args["temperature"] == temperature
