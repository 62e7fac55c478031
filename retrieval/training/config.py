"""Typed, validated training configuration (YAML -> pydantic), with defaults from the papers.

An unknown key, a wrong type or a missing path is one line naming the key, before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from retrieval.errors import ConfigError, MissingInputError
from retrieval.losses.arguments import loss_arguments, settable
from retrieval.training.model_settings import ModelSettings

LOSSES_BY_KIND = {
    "dual": ("cross_batch", "infonce"),
    "cross": ("listwise_ce", "pointwise_bce"),
    "joint": ("joint_listwise",),
}


class Strict(BaseModel):
    """The base of every config block: unknown keys are errors, ``model_*`` names are allowed."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(Strict):
    """Where examples come from: a prepared tables folder (corpus + qrels or examples)."""

    tables: Path = Field(description="folder from `rqa prepare` holding corpus/")
    split: str = "train"
    examples: Path | None = Field(
        default=None, description="examples table; default: built from qrels-{split}"
    )
    max_examples: int | None = Field(default=None, ge=1, description="take the first N only")


class TrainConfig(Strict):
    """One training run of a dual encoder (``kind: dual``), a cross-encoder (``kind: cross``), or
    both together on the same lists (``kind: joint``, RocketQAv2)."""

    kind: Literal["dual", "cross", "joint"] = "dual"
    model: str = Field(description="HF id or local folder to start from (the dual encoder)")
    cross_model: str | None = Field(default=None, description="joint: the re-ranker to start from")
    output_dir: Path
    data: DataConfig
    model_settings: ModelSettings = Field(
        default_factory=ModelSettings, description="DualEncoderSettings overrides"
    )
    loss: str | None = Field(
        default=None,
        description="dual: cross_batch (default) | infonce; "
        "cross: listwise_ce (default) | pointwise_bce",
    )
    loss_args: dict = Field(
        default_factory=dict,
        description="arguments of the chosen loss, checked against its constructor "
        "(retrieval/losses/arguments.py)",
    )
    moco_queue_size: int = Field(default=0, ge=0, description="0 = no queue of past passages")
    hard_negatives: int = Field(default=0, ge=0, description="per query (dual)")
    random_negatives: bool = Field(
        default=False,
        description="an example without negatives draws random corpus passages instead "
        "(logged); off: such examples are an error before training starts",
    )
    group_size: int = Field(
        default=4, ge=2, description="1 positive + n-1 negatives (cross, joint)"
    )
    cross_max_len: int = Field(default=256, ge=8)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=32, ge=1, description="queries per worker per step")
    lr: float = Field(default=2e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    head_lr: float | None = Field(
        default=None,
        gt=0,
        description="cross, joint: learning rate of the re-ranker's new pooler + classifier "
        "(default: lr); see retrieval/training/optimizer.py",
    )
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    seed: int = 42
    checkpoint_every: int = Field(default=100, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=10, ge=1)
    deepspeed: Path | None = Field(
        default=None, description="DeepSpeed JSON; default: ZeRO 0, fp32, clipping 1.0"
    )
    use_gpu: bool = Field(default=False, description="train on CUDA with nccl (else CPU, gloo)")
    gradient_checkpointing: bool = Field(
        default=False,
        description="recompute the encoders' activations in backward instead of keeping them: "
        "less memory for the papers' batch sizes, about a third more compute",
    )

    @model_validator(mode="after")
    def _loss_fits_kind(self) -> TrainConfig:
        allowed = LOSSES_BY_KIND[self.kind]
        if self.loss is None:
            self.loss = allowed[0]
        elif self.loss not in allowed:
            raise ValueError(
                f"loss '{self.loss}' does not train a {self.kind} model; use one of "
                f"{', '.join(allowed)}"
            )
        try:
            checked = loss_arguments(self.loss).model_validate(self.loss_args)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            takes = ", ".join(settable(self.loss)) or "no arguments"
            raise ValueError(
                f"key 'loss_args.{key}': {first['msg']} (loss '{self.loss}' takes {takes})"
            ) from None
        self.loss_args = checked.model_dump(exclude_unset=True)
        return self


def one_line(err: ValidationError, source: object) -> str:
    """Pydantic's multi-line report as one line naming the key (a check over several keys
    names them in its own message)."""
    first = err.errors()[0]
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return f"{source}: {message}{more}"
    key = ".".join(str(p) for p in first["loc"])
    return f"{source}: key '{key}': {message}{more}"


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file's top-level mapping, or a one-line error naming the file."""
    if not path.is_file():
        raise MissingInputError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def load_train_config(path: str | Path, **overrides) -> TrainConfig:
    """Read and validate a training YAML; relative paths stay relative to the working dir."""
    path = Path(path)
    raw = {**read_yaml_mapping(path), **overrides}
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(one_line(err, path)) from None
    check_paths(config, path)
    return absolute_paths(config)


def check_paths(config: TrainConfig, source: object) -> None:
    named = {"data.tables": config.data.tables, "data.examples": config.data.examples}
    named["deepspeed"] = config.deepspeed
    for key, value in named.items():
        if value is not None and not Path(value).exists():
            raise MissingInputError(f"{source}: key '{key}': {value} does not exist")


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """Workers on Ray start in another directory: make every local path absolute."""
    data = config.data.model_copy(
        update={
            "tables": config.data.tables.resolve(),
            "examples": config.data.examples.resolve() if config.data.examples else None,
        }
    )
    update = {"data": data, "output_dir": config.output_dir.resolve()}
    if config.deepspeed:
        update["deepspeed"] = config.deepspeed.resolve()
    for key in ("model", "cross_model"):
        value = getattr(config, key)
        if value and Path(value).exists():
            update[key] = str(Path(value).resolve())
    return config.model_copy(update=update)
