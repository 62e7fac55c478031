"""Every shipped pipeline config validates (keys, values, training sections, stage graph)."""

from pathlib import Path

import pytest
import yaml

from pipelines.config import PipelineConfig, check_train_sections
from pipelines.runner import check_graph

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_the_four_pipeline_configs_ship():
    assert {p.stem for p in CONFIGS} >= {"demo", "scifact", "msmarco", "nq"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_is_valid(path):
    config = PipelineConfig.model_validate(yaml.safe_load(path.read_text()))
    check_train_sections(config, path)
    check_graph(config)
    assert config.enabled_stages()[0] == "prepare" and config.enabled_stages()[-1] == "evaluate"


def test_a_stage_whose_input_is_disabled_is_refused(tmp_path):
    raw = yaml.safe_load(CONFIGS[0].read_text())
    raw["stages"]["train_cross"]["enabled"] = False
    with pytest.raises(
        ValueError, match="stage denoise needs stage train_cross, which is disabled"
    ):
        check_graph(PipelineConfig.model_validate(raw))
