"""mine's title queries for train_cross (pipelines/stages/title_queries.py): each title's own
passage is its positive, same-titled passages are never negatives, the lists stream a shard at
a time; train_cross reads them (and their lists, for deep negatives) only when mine draws any,
and trains on the labelled examples followed by the title ones."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from pipelines.config import PipelineConfig
from pipelines.stages import stage_spec
from pipelines.stages.context import StageContext
from pipelines.stages.spec import Output
from pipelines.stages.title_queries import title_examples
from pipelines.stages.training import cross_examples
from retrieval.tables import CANDIDATES, CORPUS, EXAMPLES, read_table, write_table

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
TITLES = {f"p{i}": f"title number {i} of ten" for i in range(10)}
TITLES["p3"] = TITLES["p0"]  # one article cut into two passages


def _corpus(folder: Path) -> Path:
    rows = [{"pid": pid, "title": title, "text": "x"} for pid, title in TITLES.items()]
    write_table(folder / "corpus", rows, CORPUS, shard_rows=3)
    return folder / "corpus"


def _lists(folder: Path, ranked: dict[str, list[str]], name: str) -> Path:
    rows = [{"qid": q, "pids": pids, "scores": [0.0] * len(pids)} for q, pids in ranked.items()]
    write_table(folder / name, rows, CANDIDATES, shard_rows=1)
    return folder / name


def test_title_examples_keep_the_own_passage_and_skip_same_titled_ones(tmp_path):
    corpus = _corpus(tmp_path)
    ranked = {"title-p0": ["p3", "p0", "p5", "p1", "p7"], "title-p5": ["p5", "p2", "p9", "p4"]}
    got = [row for t in title_examples(TITLES, _lists(tmp_path, ranked, "c"), corpus, 2)
           for row in t.to_pylist()]  # fmt: skip
    assert got == [
        {"qid": "title-p0", "query": TITLES["p0"], "positives": ["p0"], "negatives": ["p5", "p1"]},
        {"qid": "title-p5", "query": TITLES["p5"], "positives": ["p5"], "negatives": ["p2", "p9"]},
    ]


def _config(title_queries: int, deep_negatives: int) -> PipelineConfig:
    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["mine"]["title_queries"] = title_queries
    raw["stages"]["train_cross"]["deep_negatives"] = deep_negatives
    return PipelineConfig.model_validate(raw)


def test_train_cross_reads_title_tables_only_when_mine_draws_titles():
    assert "titles" not in stage_spec(_config(0, 4), "train_cross").reads
    assert "examples-titles" not in stage_spec(_config(0, 4), "mine").writes
    reads = stage_spec(_config(50, 0), "train_cross").reads
    assert reads["titles"] == Output("mine", "examples-titles")
    assert "title_candidates" not in reads and "candidates" not in reads
    reads = stage_spec(_config(50, 4), "train_cross").reads
    assert reads["title_candidates"] == Output("mine", "candidates-titles")
    writes = stage_spec(_config(50, 4), "mine").writes
    assert {"queries-titles", "candidates-titles", "examples-titles"} <= set(writes)


def test_cross_examples_are_mines_then_the_titles_each_with_deep_negatives(tmp_path):
    tables = tmp_path / "tables"
    _corpus(tables)
    labelled = [{"qid": "q1", "query": "a claim", "positives": ["p1"], "negatives": ["p2"]}]
    titled = [{"qid": "title-p4", "query": TITLES["p4"], "positives": ["p4"],
               "negatives": ["p6"]}]  # fmt: skip
    write_table(tmp_path / "examples", labelled, EXAMPLES)
    write_table(tmp_path / "titles", titled, EXAMPLES)
    inputs = {
        "tables": tables,
        "examples": tmp_path / "examples",
        "titles": tmp_path / "titles",
        "candidates": _lists(tmp_path, {"q1": ["p2", "p1", "p7", "p8"]}, "candidates"),
        "title_candidates": _lists(tmp_path, {"title-p4": ["p4", "p6", "p9", "p5"]}, "tc"),
    }
    ctx = StageContext("train_cross", _config(1, 1), tmp_path / "out", tmp_path / "work", inputs)
    got = read_table(cross_examples(ctx)).to_pylist()
    seed = ctx.config.seed
    deep_q1 = random.Random(f"{seed}:q1").sample(["p7", "p8"], 1)
    deep_t4 = random.Random(f"{seed}:title-p4").sample(["p9", "p5"], 1)
    assert got == [{**labelled[0], "negatives": ["p2", *deep_q1]},
                   {**titled[0], "negatives": ["p6", *deep_t4]}]  # fmt: skip
