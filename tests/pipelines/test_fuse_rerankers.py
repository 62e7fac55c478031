"""evaluate's ``fuse_train_cross``: train_cross's re-ranker read as a second input of evaluate,
and refused in one line where the run has not both re-rankers. What the stage computes with it
is checked on a whole run in tests/pipelines/test_pipeline_run.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import PipelineConfig
from pipelines.stages import stage_spec
from pipelines.stages.spec import Output
from retrieval.errors import ConfigError
from tests.helpers_config import load_raw

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def _demo(fuse: bool) -> dict:
    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["evaluate"]["fuse_train_cross"] = fuse
    return raw


def test_evaluate_reads_both_rerankers_only_when_asked():
    reads = stage_spec(PipelineConfig.model_validate(_demo(False)), "evaluate").reads
    assert reads["cross_model"] == Output("train_joint", "cross_model")
    assert "train_cross_model" not in reads
    reads = stage_spec(PipelineConfig.model_validate(_demo(True)), "evaluate").reads
    assert reads["cross_model"] == Output("train_joint", "cross_model")
    assert reads["train_cross_model"] == Output("train_cross", "model")


@pytest.mark.parametrize("off", ["train_joint", "train_cross"])
def test_fusing_without_both_rerankers_is_one_line(tmp_path, off):
    raw = _demo(True)
    raw["stages"][off]["enabled"] = False
    if off == "train_cross":  # denoise and augment judge with train_cross's re-ranker
        for stage in ("denoise", "train_dual_1", "augment", "train_dual_2", "train_joint"):
            raw["stages"].setdefault(stage, {})["enabled"] = False
    with pytest.raises(ConfigError) as err:
        load_raw(tmp_path, raw)
    message = str(err.value)
    assert "key 'stages.evaluate.fuse_train_cross'" in message and "\n" not in message
    raw["stages"]["evaluate"]["fuse_train_cross"] = False
    assert not load_raw(tmp_path, raw).enabled(off)
