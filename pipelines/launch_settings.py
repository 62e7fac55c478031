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
    launcher: Literal["ray", "local"] = Field(
        default="ray", description="ray: Ray Train workers; local: this process (one worker)"
    )
    workers: int = Field(default=1, ge=1, description="training processes (one per GPU)")
    ray_address: str | None = Field(default=None, description="join a cluster; None = local")
    max_failures: int = Field(default=DEFAULT_MAX_FAILURES, ge=-1, description=MAX_FAILURES_HELP)
    storage_path: str | None = Field(default=None, description=STORAGE_PATH_HELP)

    @field_validator("storage_path")
    @classmethod
    def _storage_path(cls, value: str | None) -> str | None:
        return storage_location(value)


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
