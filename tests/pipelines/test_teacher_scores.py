"""Teacher scores for MarginMSE in the pipeline: denoise stores the re-ranker's logit of each
positive and each kept negative beside them; train_dual_2 still combines them with augment's
unscored examples; ``loss: margin_mse`` is accepted where a stage's examples carry the scores
(train_dual_1 after denoise, train_joint with its live re-ranker) and one line elsewhere."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from pipelines.config import PipelineConfig
from pipelines.stages.denoise import DECISIONS, decide
from pipelines.stages.training import as_examples
from retrieval.errors import ConfigError
from retrieval.tables import EXAMPLES
from retrieval.tables.schemas import SCORED_EXAMPLES
from tests.helpers_config import load_raw

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
ROW = {"qid": "q", "query": "x", "positives": ["p1", "p2"], "negatives": ["a", "b", "c", "d"]}
LOGITS = {"p1": 4.0, "p2": 3.0, "a": 5.0, "b": -4.0, "c": 0.0, "d": -6.0}


def section(**keys):
    raw = {"name": "x", "model": "m", "data": {"beir": "."}, "stages": {"denoise": keys}}
    return PipelineConfig.model_validate(raw).stages.denoise


@pytest.mark.parametrize(
    "keys, kept",
    [
        ({}, ["b", "d"]),  # probability: sigmoid < 0.1 is a logit below -2.197
        ({"mode": "relative", "margin": 1.0}, ["b", "c", "d"]),  # below 3.0 - 1.0
    ],
)
def test_denoise_stores_the_logits_of_positives_and_kept_negatives(keys, kept):
    out, _ = decide(dict(ROW), LOGITS, section(**keys))
    assert out["negatives"] == kept
    assert out["positive_scores"] == [4.0, 3.0]
    assert out["negative_scores"] == [LOGITS[p] for p in kept]
    table = pa.Table.from_pylist([out], schema=DECISIONS)
    assert table.select(SCORED_EXAMPLES.names).schema == SCORED_EXAMPLES


def test_scored_and_plain_examples_combine_for_train_dual_2():
    scored = pa.Table.from_pylist(
        [{**ROW, "positive_scores": [1.0, 2.0], "negative_scores": [0.0] * 4}],
        schema=SCORED_EXAMPLES,
    )
    plain = pa.Table.from_pylist([ROW], schema=EXAMPLES)
    combined = pa.concat_tables([as_examples(scored), as_examples(plain)])
    assert combined.schema == EXAMPLES and combined.to_pylist() == [ROW, ROW]


def _demo(**train) -> dict:
    """demo.yaml with ``train`` keys laid over stages' blocks; its dual stages draw random
    negatives, which margin_mse refuses (no teacher score), so that is off."""
    raw = yaml.safe_load(DEMO.read_text())
    for stage in ("train_dual_1", "train_dual_2"):
        raw["stages"][stage]["train"]["random_negatives"] = False
    for stage, keys in train.items():
        block = raw["stages"].setdefault(stage, {})
        block["train"] = {**block.get("train", {}), **keys}
    return raw


def test_margin_mse_is_taken_where_the_examples_are_scored(tmp_path):
    raw = _demo(train_dual_1={"loss": "margin_mse", "hard_negatives": 2})
    raw["stages"]["train_joint"] = {**raw["stages"].get("train_joint", {}), "enabled": True}
    raw["stages"]["train_joint"]["train"] = {"loss": "margin_mse"}
    config = load_raw(tmp_path, raw)
    assert config.stages.train_dual_1.train.loss == "margin_mse"
    assert config.stages.train_joint.train.loss == "margin_mse"


@pytest.mark.parametrize(
    "stage, train, change, says",
    [
        ("train_dual_0", {"hard_negatives": 1}, {}, "train_dual_0 trains before any re-ranker"),
        ("train_dual_1", {"hard_negatives": 1}, {"denoise": False}, "denoise is off"),
        ("train_dual_2", {"hard_negatives": 1}, {"augment": True}, "augment's examples have none"),
        ("train_dual_1", {"hard_negatives": 0}, {}, "key 'hard_negatives': loss 'margin_mse'"),
        ("train_cross", {}, {}, "does not train a cross model"),
    ],
)
def test_margin_mse_elsewhere_is_one_line(tmp_path, stage, train, change, says):
    raw = _demo(**{stage: {"loss": "margin_mse", **train}})
    for other, enabled in change.items():
        raw["stages"][other] = {**raw["stages"].get(other, {}), "enabled": enabled}
    if change.get("denoise") is False:
        for other in ("train_cross", "train_joint", "augment", "train_dual_2"):
            raw["stages"][other] = {**raw["stages"].get(other, {}), "enabled": False}
    if change.get("augment"):
        raw["stages"]["augment"]["from_corpus"] = 10
        raw["stages"]["train_dual_2"] = {**raw["stages"].get("train_dual_2", {}), "enabled": True}
    with pytest.raises(ConfigError) as err:
        load_raw(tmp_path, raw)
    message = str(err.value)
    assert says in message and "\n" not in message, message


@pytest.mark.parametrize("mode", ["probability", "relative"])
def test_denoise_scores_the_positives_in_either_mode(tmp_path, monkeypatch, mode):
    """The positives' logits are the teacher's scores of the positives: scored in both modes
    (probability mode itself reads only the negatives')."""
    from pipelines.stages import denoise
    from pipelines.stages.context import StageContext

    asked = {}
    monkeypatch.setattr(denoise, "score_lists", lambda *args, **kw: asked.update(columns=args[2]))
    config = PipelineConfig.model_validate(
        {"name": "x", "model": "m", "data": {"beir": "."}, "stages": {"denoise": {"mode": mode}}}
    )
    paths = {k: tmp_path / k for k in ("cross_model", "examples", "corpus", "queries")}
    denoise.score_examples(StageContext("denoise", config, tmp_path / "o", tmp_path / "w", paths))
    assert asked["columns"] == ["negatives", "positives"]
