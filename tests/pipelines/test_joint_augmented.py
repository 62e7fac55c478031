"""`stages.train_joint.augmented`: train_joint declares augment's examples as an input only
when asked, trains on denoise's lists followed by augment's pseudo-labelled ones, and a config
that asks for them with augment off is refused in one line before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import PipelineConfig
from pipelines.stages import stage_spec
from pipelines.stages.context import StageContext
from pipelines.stages.spec import Output
from pipelines.stages.training import examples_for
from retrieval.errors import ConfigError
from retrieval.tables import EXAMPLES, read_table, write_table
from retrieval.tables.schemas import SCORED_EXAMPLES
from tests.helpers_config import load_raw

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def _raw(augmented: bool) -> dict:
    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["train_joint"]["augmented"] = augmented
    return raw


def test_train_joint_reads_augments_examples_only_when_asked():
    reads = stage_spec(PipelineConfig.model_validate(_raw(False)), "train_joint").reads
    assert "augmented" not in reads
    reads = stage_spec(PipelineConfig.model_validate(_raw(True)), "train_joint").reads
    assert reads["augmented"] == Output("augment", "examples-augmented")
    assert reads["examples"] == Output("denoise", "examples-joint-train")  # still denoise's


def test_train_joint_trains_on_denoises_lists_then_augments(tmp_path, caplog):
    joint = [
        {"qid": "q1", "query": "a", "positives": ["p0"], "negatives": ["p1", "p2", "p3"]},
        {"qid": "q2", "query": "b", "positives": ["p4"], "negatives": ["p5"]},
    ]
    augmented = [{"qid": "aug-0", "query": "c", "positives": ["p6"], "negatives": ["p7", "p8"]}]
    write_table(tmp_path / "joint", joint, EXAMPLES, shard_rows=1)
    write_table(tmp_path / "augmented", augmented, EXAMPLES)
    config = PipelineConfig.model_validate(_raw(True))
    inputs = {"examples": tmp_path / "joint", "augmented": tmp_path / "augmented"}
    ctx = StageContext("train_joint", config, tmp_path / "out", tmp_path / "work", inputs)
    with caplog.at_level("INFO", logger="pipelines.stages.training"):
        assert read_table(examples_for(ctx)).to_pylist() == joint + augmented
    assert "3 examples: 2 labelled, then 1 of augment's pseudo-labelled" in caplog.text
    off = StageContext("train_joint", config, tmp_path / "out", tmp_path / "work2",
                       {"examples": tmp_path / "joint"})  # fmt: skip
    assert read_table(examples_for(off)).to_pylist() == joint


def test_augmented_examples_join_scored_examples_in_the_plain_schema(tmp_path):
    """The same join serves train_dual_2, whose denoise examples carry the re-ranker's scores
    (SCORED_EXAMPLES) where augment's have none: both are written in the plain schema."""
    scored = [{"qid": "q1", "query": "a", "positives": ["p0"], "negatives": ["p1"],
               "positive_scores": [2.0], "negative_scores": [-1.0]}]  # fmt: skip
    write_table(tmp_path / "joint", scored, SCORED_EXAMPLES)
    write_table(tmp_path / "augmented",
                [{"qid": "aug-0", "query": "c", "positives": ["p6"], "negatives": ["p7"]}],
                EXAMPLES)  # fmt: skip
    inputs = {"examples": tmp_path / "joint", "augmented": tmp_path / "augmented"}
    ctx = StageContext("train_dual_2", PipelineConfig.model_validate(_raw(False)),
                       tmp_path / "out", tmp_path / "work", inputs)  # fmt: skip
    table = read_table(examples_for(ctx))
    assert table.schema.names == EXAMPLES.names
    assert table["qid"].to_pylist() == ["q1", "aug-0"]


def test_augmented_joint_with_augment_off_is_one_line(tmp_path):
    raw = _raw(True)
    raw["stages"]["augment"]["enabled"] = False
    raw["stages"]["train_dual_2"] = {"enabled": False}  # it reads augment's examples too
    with pytest.raises(ConfigError) as err:
        load_raw(tmp_path, raw)
    message = str(err.value)
    assert "key 'stages.train_joint.augmented'" in message and "\n" not in message
    assert "config.yaml" in message
    raw["stages"]["train_joint"]["augmented"] = False
    assert not load_raw(tmp_path, raw).enabled("augment")
