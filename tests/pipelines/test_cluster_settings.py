"""The cluster settings of training, without a cluster: ``storage_path`` (a local folder or a URI
for pyarrow.fs) and ``max_failures`` validated in one line, and what reaches Ray Train's
RunConfig; Ray Train itself is replaced by a stand-in, so no Ray starts and no network is used.
tests/pipelines/test_train_fault_tolerance.py runs them on Ray Train for real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pipelines.config import PipelineConfig
from pipelines.launch_settings import LaunchSettings, load_train_job
from pipelines.train_launcher import launch, run_config
from retrieval.errors import ConfigError
from tests.retrieval.training.test_training_run import write_config

URI = "s3://bucket/rqa/records"
URIS = [URI, "gs://bucket/prefix", "hdfs://namenode:8020/rqa", "file:///x"]


@pytest.mark.parametrize("uri", URIS)
def test_a_storage_uri_is_kept_as_given(uri):
    assert LaunchSettings(storage_path=uri).storage_path == uri


def test_a_local_storage_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert LaunchSettings(storage_path="records").storage_path == str(tmp_path / "records")
    assert LaunchSettings().storage_path is None and LaunchSettings().max_failures == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [("storage_path", "s3:// bucket"), ("storage_path", "s3://"), ("storage_path", " "),
     ("max_failures", -2), ("max_failures", "twice")],
)  # fmt: skip
def test_a_bad_cluster_setting_is_one_line_naming_its_key(tmp_path, key, value):
    path = tmp_path / "train.yaml"
    raw = {"model": "m", "output_dir": str(tmp_path), "data": {"tables": str(tmp_path)}}
    path.write_text(yaml.safe_dump({**raw, key: value}))
    with pytest.raises(ConfigError, match=f"key '{key}'") as caught:
        load_train_job(path)
    assert "\n" not in str(caught.value)


class FakeTrainer:
    """Stands in for TorchTrainer: keeps what it was given; fit() trains nothing."""

    made: list[dict] = []

    def __init__(self, *args, **kwargs):
        FakeTrainer.made.append(kwargs)

    def fit(self):
        return None


def test_a_storage_uri_and_the_failure_limit_reach_ray_trains_run_config(
    tmp_path, scifact_tables, tiny_bert_dir, monkeypatch
):
    import ray.train.torch

    from pipelines import train_launcher

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", FakeTrainer)
    monkeypatch.setattr(train_launcher, "ensure_ray", lambda address=None: None)
    FakeTrainer.made.clear()
    extra = {"launcher": "ray", "workers": 2, "storage_path": URI, "max_failures": 3}
    path = write_config(tmp_path, "run", scifact_tables, tiny_bert_dir, **extra)
    launch(*load_train_job(path))

    (given,) = FakeTrainer.made
    config = given["run_config"]
    assert config.storage_path == URI and config.failure_config.max_failures == 3
    assert re.fullmatch(r"train-dual-run-[0-9a-f]{8}", config.name), config.name
    assert given["scaling_config"].num_workers == 2


def test_without_settings_ray_train_keeps_its_records_in_the_output_folder(
    tmp_path, scifact_tables, tiny_bert_dir
):
    path = write_config(tmp_path, "run", scifact_tables, tiny_bert_dir, launcher="ray")
    config, how = load_train_job(path)
    made = run_config(config, how)
    assert made.storage_path == str(tmp_path / "run" / "ray") and made.name == "train-dual"
    assert made.failure_config.max_failures == 2  # recovery is on by default


def test_two_output_folders_sharing_a_storage_path_get_two_run_names(
    tmp_path, scifact_tables, tiny_bert_dir
):
    names = set()
    for folder in ("a/run", "b/run"):
        (tmp_path / folder).parent.mkdir(parents=True, exist_ok=True)
        path = write_config(tmp_path, folder, scifact_tables, tiny_bert_dir, storage_path=URI)
        names.add(run_config(*load_train_job(path)).name)
    assert len(names) == 2


def pipeline_raw(tmp_path: Path, **ray) -> dict:
    return {"name": "x", "model": "m", "data": {"beir": str(tmp_path)}, "ray": ray}


def test_a_pipeline_takes_its_cluster_settings_from_the_ray_section(tmp_path):
    raw = pipeline_raw(tmp_path, address="head:6379", storage_path=URI, max_failures=2)
    config = PipelineConfig.model_validate(raw)
    assert config.ray.launch_keys() == {
        "ray_address": "head:6379", "storage_path": URI, "max_failures": 2
    }  # fmt: skip
    assert LaunchSettings(**config.ray.launch_keys()).storage_path == URI
    for key, value in (("max_failures", 1), ("storage_path", URI), ("ray_address", "a:1")):
        stages = {"train_dual_0": {"train": {key: value}}}
        with pytest.raises(ValidationError, match=f"stages.train_dual_0.train.{key}"):
            PipelineConfig.model_validate({**pipeline_raw(tmp_path), "stages": stages})


def test_a_training_stage_launches_with_the_ray_sections_settings(tmp_path):
    from pipelines.stages.context import StageContext
    from pipelines.stages.training import train_config

    raw = pipeline_raw(tmp_path, storage_path=URI, max_failures=2)
    config = PipelineConfig.model_validate(raw)
    ctx = StageContext("train_dual_0", config, tmp_path / "out", tmp_path / "work",
                       inputs={"model": "m", "tables": tmp_path})  # fmt: skip
    _, how = train_config(ctx, None)
    assert how.storage_path == URI and how.max_failures == 2


def failing_trainer(failures: dict):
    """A TorchTrainer stand-in whose fit() fails as Ray Train's does, with these worker errors."""
    from ray.train import WorkerGroupError

    class Failing(FakeTrainer):
        def fit(self):
            raise WorkerGroupError("worker errors", failures)

    return Failing


def test_a_lost_worker_is_one_line_and_a_bug_in_training_keeps_its_traceback(
    tmp_path, scifact_tables, tiny_bert_dir, monkeypatch
):
    import ray.train.torch
    from ray.exceptions import ActorDiedError
    from ray.train import WorkerGroupError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    from pipelines import train_launcher

    monkeypatch.setattr(train_launcher, "ensure_ray", lambda address=None: None)
    path = write_config(tmp_path, "run", scifact_tables, tiny_bert_dir, launcher="ray")
    lost = WorkerHealthCheckFailedError("health check failed", ActorDiedError())
    collateral = RuntimeError("gloo: Connection reset by peer")
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", failing_trainer({0: collateral, 1: lost}))
    with pytest.raises(train_launcher.WorkersLostError, match="lost worker rank 1 "):
        launch(*load_train_job(path))
    bug = ValueError("a bug in the training loop")
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", failing_trainer({0: bug}))
    with pytest.raises(WorkerGroupError):
        launch(*load_train_job(path))
