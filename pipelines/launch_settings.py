"""How a training run is launched: on Ray Train workers or in this process, how many workers,
which Ray cluster. Launcher concerns only: the library's TrainConfig knows nothing of them.

A training YAML for `rqa train-*` holds TrainConfig keys and these keys side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from retrieval.errors import ConfigError
from retrieval.training.config import (
    Strict,
    TrainConfig,
    absolute_paths,
    check_paths,
    one_line,
    read_yaml_mapping,
)


class LaunchSettings(Strict):
    launcher: Literal["ray", "local"] = Field(
        default="ray", description="ray: Ray Train workers; local: this process (one worker)"
    )
    workers: int = Field(default=1, ge=1, description="training processes (one per GPU)")
    ray_address: str | None = Field(default=None, description="join a cluster; None = local")


def split_launch_keys(raw: dict) -> tuple[dict, dict]:
    """(TrainConfig keys, LaunchSettings keys) of one mapping."""
    launch = {k: v for k, v in raw.items() if k in LaunchSettings.model_fields}
    return {k: v for k, v in raw.items() if k not in launch}, launch


def load_train_job(path: str | Path, **overrides) -> tuple[TrainConfig, LaunchSettings]:
    """Read a training YAML: the validated training config and how to launch it."""
    path = Path(path)
    train_raw, launch_raw = split_launch_keys({**read_yaml_mapping(path), **overrides})
    try:
        config = TrainConfig.model_validate(train_raw)
        launch = LaunchSettings.model_validate(launch_raw)
    except ValidationError as err:
        raise ConfigError(one_line(err, path)) from None
    check_paths(config, path)
    return absolute_paths(config), launch
