"""How a training run is launched: on Ray Train workers or in this process, how many workers,
which Ray cluster, how many lost workers Ray Train replaces, where it keeps its run records.
Launcher concerns only: the library's training config knows nothing of them.

A training YAML for `rqa train-*` holds training config keys and these keys side by side.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from retrieval.errors import ConfigError
from retrieval.training.config import (
    Strict,
    TrainConfig,
    absolute_paths,
    check_paths,
    one_line,
    read_yaml_mapping,
    validate_train_config,
)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")  # scheme://bucket/prefix, file:///dir
MAX_FAILURES_HELP = (
    "Ray Train: how many times a failed or lost worker group is restarted, each time resuming "
    "from the last checkpoint; -1: no limit; 0: the first failure ends the run (the same "
    "command then resumes it). Default 2, as a cluster wants"
)
DEFAULT_MAX_FAILURES = 2
STORAGE_PATH_HELP = (
    "Ray Train's run records: a folder every node sees, or a URI (s3://bucket/prefix, "
    "gs://..., hdfs://...) pyarrow.fs can open; None: OUTPUT_DIR/ray"
)


class LaunchSettings(Strict):
    """How a training run is launched. ``global_batch_size`` (the paper's batch, e.g.
    RocketQA's cross-batch 4,096) gives each of the ``workers`` ``global_batch_size / workers``
    queries a step instead of ``batch_size``, so one config keeps its recipe (global batch,
    cross-batch negatives) on 8 or 64 GPUs; ``workers: auto`` is one worker per GPU of the Ray
    cluster (``use_gpu``)."""

    launcher: Literal["ray", "local"] = Field(
        default="ray", description="ray: Ray Train workers; local: this process (one worker)"
    )
    workers: int | Literal["auto"] = Field(
        default=1, description="training processes (one per GPU); auto: every GPU of the cluster"
    )
    global_batch_size: int | None = Field(
        default=None, ge=1,
        description="queries a step over all workers; each worker takes its share (replaces "
        "batch_size, which it must not be given with)",
    )  # fmt: skip
    ray_address: str | None = Field(default=None, description="join a cluster; None = local")
    max_failures: int = Field(default=DEFAULT_MAX_FAILURES, ge=-1, description=MAX_FAILURES_HELP)
    storage_path: str | None = Field(default=None, description=STORAGE_PATH_HELP)

    @field_validator("storage_path")
    @classmethod
    def _storage_path(cls, value: str | None) -> str | None:
        return storage_location(value)

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("workers must be at least 1, or auto")
        return value

    def resolved(self, gpus_in_cluster: float) -> LaunchSettings:
        """These settings with ``workers: auto`` made a number: every GPU of the cluster."""
        if self.workers != "auto":
            return self
        if self.launcher == "local" or gpus_in_cluster < 1:
            return self.model_copy(update={"workers": 1})
        return self.model_copy(update={"workers": int(gpus_in_cluster)})


def per_worker_batch(config: TrainConfig, how: LaunchSettings, source: object) -> TrainConfig:
    """``config`` with each worker's share of ``global_batch_size`` as its ``batch_size``; one
    line when the global batch does not split evenly, or both batches were given."""
    if how.global_batch_size is None:
        return config
    if "batch_size" in config.model_fields_set:
        raise ConfigError(
            f"{source}: give batch_size (per worker) or global_batch_size (all workers), not both"
        )
    share, left = divmod(how.global_batch_size, int(how.workers))
    if left or share < 1:
        raise ConfigError(
            f"{source}: global_batch_size {how.global_batch_size} does not split evenly over "
            f"{how.workers} workers"
        )
    return config.model_copy(update={"batch_size": share})


def storage_location(value: str | None) -> str | None:
    """A URI as given: pyarrow.fs reads it when Ray Train starts, so checking it here would need
    the network and the credentials. A local path made absolute: Ray workers start elsewhere."""
    if value is None:
        return None
    value = value.strip()
    if "://" in value:
        if not _URI.match(value):
            raise ValueError(f"{value!r} is not a URI like s3://bucket/prefix")
        return value
    if not value:
        raise ValueError("empty path; leave it out for OUTPUT_DIR/ray")
    return str(Path(value).expanduser().resolve())


def split_launch_keys(raw: dict) -> tuple[dict, dict]:
    """(training config keys, LaunchSettings keys) of one mapping."""
    launch = {k: v for k, v in raw.items() if k in LaunchSettings.model_fields}
    return {k: v for k, v in raw.items() if k not in launch}, launch


def load_train_job(path: str | Path, **overrides) -> tuple[TrainConfig, LaunchSettings]:
    """Read a training YAML: the validated training config and how to launch it."""
    path = Path(path)
    train_raw, launch_raw = split_launch_keys({**read_yaml_mapping(path), **overrides})
    try:
        config = validate_train_config(train_raw)
        launch = LaunchSettings.model_validate(launch_raw)
    except ValidationError as err:
        raise ConfigError(one_line(err, path)) from None
    check_paths(config, path)
    return absolute_paths(config), launch
