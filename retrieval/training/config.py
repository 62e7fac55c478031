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
from retrieval.training.retromae.settings import RetroMAESettings, fit_retromae

LOSSES_BY_KIND = {
    "dual": ("cross_batch", "infonce"),
    "cross": ("listwise_ce", "pointwise_bce"),
    "joint": ("joint_listwise",),
    "pair": (
        "cosent",
        "cosine_mse",
        "sbert_softmax",
        "infonce",
        "simcse_unsup",
        "circle",
        "multilabel_ce",
    ),
    "retromae": ("masked_lm",),
}
# Config names that the loss registry (retrieval/losses/__init__.py) knows by another name.
LOSS_ALIASES = {"simcse_unsup": "simcse"}
# Pair losses that read plain sentences (two dropout views of each) instead of labelled pairs,
# and those that can take a queue of past embeddings as extra negatives.
SENTENCE_LOSSES = ("simcse_unsup",)
QUEUE_LOSSES = ("infonce", "simcse_unsup")


def registered_loss(name: str) -> str:
    """The name ``name`` has in the loss registry (``simcse_unsup`` -> ``simcse``)."""
    return LOSS_ALIASES.get(name, name)


class Strict(BaseModel):
    """The base of every config block: unknown keys are errors, ``model_*`` names are allowed."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(Strict):
    """Where examples come from: a prepared tables folder (corpus + qrels or examples); for
    ``kind: pair``, sentence-pair files, a file of sentences, or a corpus (retrieval/training/
    pairs.py)."""

    tables: Path | None = Field(
        default=None,
        description="folder from `rqa prepare` holding corpus/ (dual, cross, joint; pair with "
        "simcse_unsup: the corpus passages are its sentences)",
    )
    split: str = "train"
    examples: Path | None = Field(
        default=None, description="examples table; default: built from qrels-{split}"
    )
    max_examples: int | None = Field(default=None, ge=1, description="take the first N only")
    pairs: Path | None = Field(
        default=None,
        description="pair: a folder of sentence-pair files (STS-B SPLIT.tsv, senteval_cn "
        "*.SPLIT.data) or one such file",
    )
    sentences: Path | None = Field(
        default=None, description="pair, simcse_unsup: a text file, one sentence a line"
    )
    label_range: tuple[float, float] | None = Field(
        default=None,
        description="pair: the lowest and highest label there can be (STS-B: [0, 5]); labels "
        "are scaled to [0, 1] by it; default: the training file's lowest and highest",
    )
    positive_at: float | None = Field(
        default=None,
        description="pair: a pair whose label is at least this is positive (infonce keeps only "
        "those; circle, multilabel_ce read them as 1); default: 80% up the label range "
        "(4.0 of STS-B's 0-5, 1 of 0/1 labels)",
    )


class ProjectorConfig(Strict):
    """A training-only MLP between the encoder and a pair loss (retrieval/training/projector.py),
    dropped at export; ``projector: {}`` takes the defaults."""

    hidden_dim: int | None = Field(default=None, ge=1, description="default: the model's dim")
    out_dim: int | None = Field(default=None, ge=1, description="default: the model's dim")


class GradCacheConfig(Strict):
    """Gradient caching (GradCache, Gao et al. 2021; retrieval/training/grad_cache.py): each
    step encodes its batch in chunks of these many rows, twice (without, then with a graph), so
    activation memory follows the chunk, not the batch, and the gradients stay those of the
    whole batch (cross-batch negatives and a MoCo queue included). Kinds dual and joint; not
    with ZeRO stage 3. ``grad_cache: {}`` takes the defaults."""

    query_chunk: int = Field(default=16, ge=1, description="queries encoded at once")
    passage_chunk: int = Field(default=16, ge=1, description="passages encoded at once")
    pair_chunk: int = Field(
        default=16,
        ge=1,
        description="joint: (query, passage) pairs the re-ranker scores at once",
    )
    keep_last: int = Field(
        default=0,
        ge=0,
        description="encode each kind's last N chunks (its longest texts) once, with their "
        "graphs kept through the step (true = 1): N forwards saved per kind, for N more chunks "
        "of activations per kind held, a constant that does not grow with the batch (0 by "
        "default: memory is what gradient caching is for)",
    )

    def summary(self, kind: str) -> str:
        """How the batch is split, as the training log says it."""
        text = f"query chunk {self.query_chunk}, passage chunk {self.passage_chunk}"
        text += f", pair chunk {self.pair_chunk}" if kind == "joint" else ""
        if self.keep_last:
            chunks = "chunk" if self.keep_last == 1 else f"{self.keep_last} chunks"
            text += f", last {chunks} encoded once (keep_last)"
        return text


GRAD_CACHE_KINDS = ("dual", "joint")


class TrainConfig(Strict):
    """One training run of a dual encoder (``kind: dual``), a cross-encoder (``kind: cross``),
    both together on the same lists (``kind: joint``, RocketQAv2), or a sentence-embedding
    model on sentence pairs (``kind: pair``), or an encoder pre-trained on a corpus's passages
    by masked auto-encoding (``kind: retromae``)."""

    kind: Literal["dual", "cross", "joint", "pair", "retromae"] = "dual"
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
        "cross: listwise_ce (default) | pointwise_bce; "
        "pair: cosent (default) | cosine_mse | sbert_softmax | infonce | simcse_unsup | circle "
        "| multilabel_ce; retromae: masked_lm (encoder + decoder masked-LM)",
    )
    loss_args: dict = Field(
        default_factory=dict,
        description="arguments of the chosen loss, checked against its constructor "
        "(retrieval/losses/arguments.py)",
    )
    moco_queue_size: int = Field(
        default=0, ge=0, description="dual: size of a queue of past passages; 0 = none"
    )
    queue: bool = Field(
        default=False,
        description="pair (infonce, simcse_unsup): past embeddings as extra negatives (MoCo / "
        "ESimCSE queue, no momentum encoder)",
    )
    queue_batches: float = Field(
        default=2.5, gt=0, description="pair: the queue's size in global batches (ESimCSE: 2.5)"
    )
    projector: ProjectorConfig | None = Field(
        default=None,
        description="pair: a training-only MLP (SimCLR) before the loss, dropped at export",
    )
    hard_negatives: int = Field(default=0, ge=0, description="per query (dual)")
    random_negatives: bool = Field(
        default=False,
        description="an example without negatives draws random corpus passages instead "
        "(logged); off: such examples are an error before training starts",
    )
    group_size: int = Field(
        default=4,
        ge=1,
        description="1 positive + n-1 negatives (cross, joint: >= 2); pair: 1, a pair is its "
        "own group",
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
        description="cross, joint: learning rate of the re-ranker's new pooler + classifier; "
        "retromae: of the masked-LM head and decoder (default: lr); see "
        "retrieval/training/optimizer.py",
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

    grad_cache: GradCacheConfig | None = Field(
        default=None,
        description="dual, joint: gradient caching, for batches larger than memory allows "
        "(same gradients, a second forward per chunk); unset: off",
    )
    retromae: RetroMAESettings | None = Field(
        default=None,
        description="retromae: the mask ratios of RetroMAE pre-training (retrieval/training/"
        "retromae/); unset: the defaults",
    )

    @model_validator(mode="before")
    @classmethod
    def _pairs_come_alone(cls, raw: object) -> object:
        """A pair is its own group: no negatives are drawn for it (retrieval/training/
        negatives.py then has nothing to check)."""
        if isinstance(raw, dict) and raw.get("kind") == "pair" and "group_size" not in raw:
            raw = {**raw, "group_size": 1}
        return raw

    @model_validator(mode="after")
    def _data_fits_kind(self) -> TrainConfig:
        check_data_fits_kind(self)
        return self

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
        check_pair_options(self)
        try:
            checked = loss_arguments(registered_loss(self.loss)).model_validate(self.loss_args)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            takes = ", ".join(settable(registered_loss(self.loss))) or "no arguments"
            raise ValueError(
                f"key 'loss_args.{key}': {first['msg']} (loss '{self.loss}' takes {takes})"
            ) from None
        self.loss_args = checked.model_dump(exclude_unset=True)
        return self

    @model_validator(mode="after")
    def _grad_cache_fits_kind(self) -> TrainConfig:
        check_grad_cache(self)
        return self

    @model_validator(mode="after")
    def _retromae_fits_kind(self) -> TrainConfig:
        settings = fit_retromae(self.kind, self.retromae, self.data.examples)
        if settings is not self.retromae:  # the defaults filled in for kind retromae
            self.retromae = settings
        return self


PAIR_ONLY = ("queue", "projector")


def check_grad_cache(config: TrainConfig) -> None:
    """Gradient caching splits the dual encoder's (and joint's re-ranker's) batch; a cross or
    pair run has no such step, so asking for it there is refused rather than ignored."""
    chunks = config.grad_cache
    if chunks is None:
        return
    if config.kind not in GRAD_CACHE_KINDS:
        raise ValueError(
            f"key 'grad_cache': kind {config.kind} does not support it "
            f"({', '.join(GRAD_CACHE_KINDS)} only)"
        )
    if config.kind != "joint" and "pair_chunk" in chunks.model_fields_set:
        raise ValueError("key 'grad_cache.pair_chunk': only kind joint scores pairs")


def check_data_fits_kind(config: TrainConfig) -> None:
    """Pair training reads exactly one of data.pairs, data.sentences, data.tables (the last
    two for simcse_unsup only); the other kinds read data.tables and need a group of >= 2."""
    data = config.data
    if config.kind != "pair":
        if data.tables is None:
            raise ValueError(f"key 'data.tables': required for kind {config.kind}")
        for key in ("pairs", "sentences"):
            if getattr(data, key) is not None:
                raise ValueError(f"key 'data.{key}': only kind pair reads it")
        if config.kind != "dual" and config.group_size < 2:
            raise ValueError(
                f"key 'group_size': {config.kind} needs >= 2 (1 positive + negatives), "
                f"got {config.group_size}"
            )
        return
    sources = [key for key in ("pairs", "sentences", "tables") if getattr(data, key) is not None]
    if len(sources) != 1:
        raise ValueError(
            "kind pair reads one of data.pairs (sentence pairs), data.sentences or data.tables "
            f"(sentences for simcse_unsup); got {', '.join(sources) or 'none'}"
        )
    if data.examples is not None:
        raise ValueError("key 'data.examples': kind pair reads data.pairs, not examples")
    if config.group_size != 1:
        raise ValueError("key 'group_size': a pair is its own group; leave it out for kind pair")
    if data.label_range is not None and not data.label_range[1] > data.label_range[0]:
        raise ValueError(f"key 'data.label_range': {list(data.label_range)} must rise")


def check_pair_options(config: TrainConfig) -> None:
    """Options that only some pair losses can use, refused in one line naming the key."""
    if config.kind != "pair":
        for key in PAIR_ONLY:
            if key in config.model_fields_set:
                raise ValueError(f"key '{key}': only kind pair uses it (dual: moco_queue_size)")
        return
    if config.moco_queue_size:
        raise ValueError("key 'moco_queue_size': kind pair sizes its queue with queue_batches")
    if config.queue and config.loss not in QUEUE_LOSSES:
        raise ValueError(
            f"key 'queue': loss '{config.loss}' takes no extra negatives; use one of "
            f"{', '.join(QUEUE_LOSSES)}"
        )
    if config.loss not in SENTENCE_LOSSES and config.data.pairs is None:
        raise ValueError(f"key 'data.pairs': loss '{config.loss}' trains on labelled pairs")


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
    data = config.data
    named = {"data.tables": data.tables, "data.examples": data.examples}
    named.update({"data.pairs": data.pairs, "data.sentences": data.sentences})
    named["deepspeed"] = config.deepspeed
    for key, value in named.items():
        if value is not None and not Path(value).exists():
            raise MissingInputError(f"{source}: key '{key}': {value} does not exist")


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """Workers on Ray start in another directory: make every local path absolute."""
    paths = ("tables", "examples", "pairs", "sentences")
    data = config.data.model_copy(
        update={key: getattr(config.data, key) and getattr(config.data, key).resolve()
                for key in paths}
    )  # fmt: skip
    update = {"data": data, "output_dir": config.output_dir.resolve()}
    if config.deepspeed:
        update["deepspeed"] = config.deepspeed.resolve()
    for key in ("model", "cross_model"):
        value = getattr(config, key)
        if value and Path(value).exists():
            update[key] = str(Path(value).resolve())
    return config.model_copy(update=update)
