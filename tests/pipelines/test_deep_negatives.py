"""train_cross's deep negatives (pipelines/stages/deep_negatives.py): drawn from the rest of
mine's lists, never a positive, a kept negative or (NQ) an answer-holding passage; seeded per
query; declared as an input of train_cross only."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from pipelines.config import PipelineConfig
from pipelines.stages import stage_spec
from pipelines.stages.deep_negatives import add_deep_negatives, deep_examples
from pipelines.stages.spec import Output
from retrieval.errors import ConfigError
from retrieval.tables import ANSWERS, CANDIDATES, CORPUS, EXAMPLES, read_table, write_table
from tests.helpers_config import load_raw

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def _rows():
    return [
        {"qid": "q1", "query": "a", "positives": ["p0"], "negatives": ["p1", "p2"]},
        {"qid": "q2", "query": "b", "positives": ["p5"], "negatives": []},
    ]


def test_deep_negatives_come_from_the_rest_of_the_list():
    ranked = {"q1": [f"p{i}" for i in range(20)], "q2": ["p5", "p6", "p7"]}
    rows = add_deep_negatives(_rows(), ranked, count=5, seed=3)
    q1, q2 = rows
    assert q1["negatives"][:2] == ["p1", "p2"]  # mine's negatives first, unchanged
    deep = q1["negatives"][2:]
    assert len(deep) == 5 and len(set(deep)) == 5
    assert set(deep) <= {f"p{i}" for i in range(3, 20)}  # not p0 (positive), p1, p2 (kept)
    assert q2["negatives"] == ["p6", "p7"] or q2["negatives"] == ["p7", "p6"]  # fewer: all left
    rest = [f"p{i}" for i in range(3, 20)]  # the draw written out: seeded by seed and qid
    assert deep == random.Random("3:q1").sample(rest, 5)


def test_the_draw_is_the_same_on_a_rerun_and_changes_with_the_seed():
    ranked = {"q1": [f"p{i}" for i in range(100)], "q2": [f"p{i}" for i in range(100)]}
    first = add_deep_negatives(_rows(), ranked, 8, seed=0)
    assert add_deep_negatives(_rows(), ranked, 8, seed=0) == first
    assert add_deep_negatives(_rows(), ranked, 8, seed=1) != first


def test_deep_examples_skip_passages_that_hold_an_answer(tmp_path):
    tables = tmp_path / "tables"
    corpus = [{"pid": f"p{i}", "title": "t", "text": f"passage {i}"} for i in range(12)]
    corpus[7]["text"] = "the capital is Paris"
    write_table(tables / "corpus", corpus, CORPUS)
    write_table(tables / "answers-train", [{"qid": "q1", "answers": ["Paris"]}], ANSWERS)
    write_table(tmp_path / "examples", _rows(), EXAMPLES, shard_rows=1)
    lists = [{"qid": "q1", "pids": [f"p{i}" for i in range(12)], "scores": [0.0] * 12}]
    write_table(tmp_path / "candidates", lists, CANDIDATES)
    out = deep_examples(tables, "train", tmp_path / "examples", tmp_path / "candidates", 20, 0,
                        tmp_path / "deep")  # fmt: skip
    rows = {row["qid"]: row for row in read_table(out).to_pylist()}
    deep = rows["q1"]["negatives"][2:]
    assert sorted(deep) == sorted(f"p{i}" for i in range(3, 12) if i != 7)
    assert rows["q2"]["negatives"] == []  # no list for q2: nothing drawn


def test_train_cross_reads_mine_candidates_only_when_it_draws_deep_negatives(tmp_path):
    raw = yaml.safe_load(DEMO.read_text())
    assert "candidates" not in stage_spec(PipelineConfig.model_validate(raw), "train_cross").reads
    raw["stages"]["train_cross"]["deep_negatives"] = 8
    reads = stage_spec(PipelineConfig.model_validate(raw), "train_cross").reads
    assert reads["candidates"] == Output("mine", "candidates-train")


def test_deep_negatives_elsewhere_than_train_cross_is_one_line(tmp_path):
    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["train_dual_1"]["deep_negatives"] = 4
    with pytest.raises(ConfigError) as err:
        load_raw(tmp_path, raw)
    message = str(err.value)
    assert "key 'stages.train_dual_1.deep_negatives'" in message and "\n" not in message


def test_deep_negatives_count_toward_train_cross_group(tmp_path):
    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["mine"]["negatives"] = 6
    raw["stages"]["train_joint"] = {"enabled": False}
    raw["stages"]["train_cross"]["train"]["group_size"] = 12  # 11 negatives: 6 top + 5 deep
    with pytest.raises(ConfigError, match="group_size': 12 needs 11"):
        load_raw(tmp_path, raw)
    raw["stages"]["train_cross"]["deep_negatives"] = 5
    assert load_raw(tmp_path, raw).stages.train_cross.deep_negatives == 5
