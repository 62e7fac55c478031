"""A global batch keeps the recipe across cluster sizes: ``global_batch_size`` is split over the
workers (``workers: auto`` = every GPU of the cluster), refused in one line when it does not
split evenly or comes with a per-worker ``batch_size``, in a pipeline config before any work."""

from __future__ import annotations

import pytest
import yaml

from pipelines.config import load_pipeline_config
from pipelines.launch_settings import LaunchSettings, per_worker_batch
from pipelines.train_launcher import resolve_launch
from retrieval.errors import ConfigError
from retrieval.training.config import validate_train_config

BASE = {"kind": "dual", "model": "m", "output_dir": "out", "data": {"tables": "t"}}


def test_auto_workers_are_the_clusters_gpus():
    auto = LaunchSettings(workers="auto")
    assert auto.resolved(64).workers == 64 and auto.resolved(0).workers == 1
    assert LaunchSettings(workers="auto", launcher="local").resolved(8).workers == 1
    assert LaunchSettings(workers=3).resolved(64).workers == 3
    with pytest.raises(ValueError):
        LaunchSettings(workers=0)


@pytest.mark.parametrize("workers,per_worker", [(8, 512), (64, 64), (1, 4096)])
def test_the_global_batch_is_split_over_the_workers(workers, per_worker):
    how = LaunchSettings(workers=workers, global_batch_size=4096)
    config = per_worker_batch(validate_train_config(BASE), how, "x.yaml")
    assert config.batch_size == per_worker
    assert config.model_dump(exclude_unset=True)["batch_size"] == per_worker  # reaches workers


def test_a_global_batch_that_does_not_split_or_comes_with_a_batch_size_is_one_line():
    with pytest.raises(ConfigError, match=r"x.yaml: global_batch_size 30 does not split evenly"):
        per_worker_batch(validate_train_config(BASE), LaunchSettings(workers=4,
                         global_batch_size=30), "x.yaml")  # fmt: skip
    given = validate_train_config({**BASE, "batch_size": 8})
    with pytest.raises(ConfigError, match="batch_size .* or global_batch_size .*, not both"):
        per_worker_batch(given, LaunchSettings(workers=2, global_batch_size=16), "x.yaml")


def test_resolve_launch_without_auto_needs_no_cluster():
    how, config = resolve_launch(
        validate_train_config(BASE), LaunchSettings(workers=2, global_batch_size=64)
    )
    assert how.workers == 2 and config.batch_size == 32


def write_pipeline(tmp_path, train: dict):
    raw = {"name": "x", "model": "m", "data": {"beir": str(tmp_path)},
           "stages": {"train_dual_0": {"train": train}, "augment": {"from_corpus": 5}}}  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_pipeline_refuses_an_uneven_global_batch_before_any_work(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(write_pipeline(tmp_path, {"global_batch_size": 30, "workers": 4}))
    assert "stages.train_dual_0.train" in str(err.value) and "\n" not in str(err.value)
    load_pipeline_config(write_pipeline(tmp_path, {"global_batch_size": 30, "workers": "auto"}))
    load_pipeline_config(write_pipeline(tmp_path, {"global_batch_size": 32, "workers": 4}))
