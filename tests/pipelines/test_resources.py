"""A stage that asks Ray for GPUs or CPUs the cluster does not have is one line before any work
(Ray itself would wait for them forever)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import PipelineConfig
from pipelines.inference.resources import check_cluster
from retrieval.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def shipped(name: str) -> PipelineConfig:
    """A shipped config as validated (its data folders need not exist here)."""
    return PipelineConfig.model_validate(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))


def test_gpu_config_on_a_cpu_cluster_is_one_line():
    config = shipped("msmarco")
    with pytest.raises(ConfigError, match=r"^stages\.train_dual_0: .* 1 GPUs .* has 0 ") as err:
        check_cluster(config, config.enabled_stages(), {"CPU": 16.0})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^stages\.mine: .* 1 GPUs .* has 0 "):
        check_cluster(config, ["mine", "evaluate"], {"CPU": 16.0})


def test_enough_resources_pass():
    config = shipped("msmarco")
    check_cluster(config, config.enabled_stages(), {"CPU": 64.0, "GPU": 8.0})
    scifact = shipped("scifact")
    check_cluster(scifact, scifact.enabled_stages(), {"CPU": 2.0})


def test_too_many_cpus_per_actor_is_named():
    config = shipped("scifact")  # mine: cpus_per_actor 2
    with pytest.raises(ConfigError, match=r"^stages\.mine: .* 2 CPUs .* has 1 "):
        check_cluster(config, ["mine"], {"CPU": 1.0})
