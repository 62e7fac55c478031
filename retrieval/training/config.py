"""Typed, validated training configuration (YAML -> pydantic), with defaults from the papers.

One class per training kind, each holding only the keys its kind reads, over the keys every run
has (:class:`TrainBase`: model, output_dir, data, loss, the schedule):

- :class:`DualConfig` (``kind: dual``, the default): a dual encoder (retriever);
- :class:`CrossConfig` (``kind: cross``): a cross-encoder (re-ranker);
- :class:`JointConfig` (``kind: joint``): both together on the same lists (RocketQAv2);
- :class:`PairConfig` (``kind: pair``): a sentence-embedding model on sentence pairs;
- :class:`RetroMAEConfig` (``kind: retromae``): masked auto-encoding pre-training on passages.

:data:`TrainConfig` is their union keyed by ``kind``; :func:`validate_train_config` validates a
mapping as the class of its kind and :func:`load_train_config` a YAML file. ``loss`` is one of
the registered losses that train the kind. An unknown key, a key of another kind (named with the
kinds that take it), a renamed key (named with its new spelling), a wrong type or a missing path
is one line naming the key, before any work.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from retrieval.errors import ConfigError, MissingInputError
from retrieval.losses.arguments import loss_arguments, settable
from retrieval.metrics.evaluate import parse_metric
from retrieval.training.model_settings import ModelSettings
from retrieval.training.retromae.settings import RetroMAESettings

# Config names that the loss registry (retrieval/losses/__init__.py) knows by another name,
# for every kind and for one kind: train_joint's margin_mse also trains the re-ranker.
LOSS_ALIASES = {"simcse_unsup": "simcse"}
KIND_LOSS_ALIASES = {"joint": {"margin_mse": "joint_margin_mse"}}
# Pair losses that read plain sentences (two dropout views of each) instead of labelled pairs,
# and those that can take a queue of past embeddings as extra negatives.
SENTENCE_LOSSES = ("simcse_unsup",)
QUEUE_LOSSES = ("infonce", "simcse_unsup")
DEFAULT_QUEUE_BATCHES = 2.5  # ESimCSE's queue: 2.5 batches of past embeddings


def registered_loss(name: str, kind: str | None = None) -> str:
    """The name ``name`` has in the loss registry (``simcse_unsup`` -> ``simcse``; in kind
    joint, ``margin_mse`` -> ``joint_margin_mse``)."""
    name = KIND_LOSS_ALIASES.get(kind, {}).get(name, name)
    return LOSS_ALIASES.get(name, name)


class Strict(BaseModel):
    """The base of every config block: unknown keys are errors, ``model_*`` names are allowed."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# --- data: where each kind reads its examples -------------------------------------------------


class ExamplesData(Strict):
    """Kinds dual, cross, joint: a prepared tables folder (corpus + qrels or examples)."""

    tables: Path = Field(description="folder from `rqa prepare` holding corpus/")
    split: str = "train"
    examples: Path | None = Field(
        default=None, description="examples table; default: built from qrels-{split}"
    )
    max_examples: int | None = Field(default=None, ge=1, description="take the first N only")


class CorpusData(Strict):
    """Kind retromae: the passages of a prepared corpus are the examples (no queries)."""

    tables: Path = Field(description="folder from `rqa prepare` whose corpus/ passages it reads")
    max_examples: int | None = Field(
        default=None, ge=1, description="take the first N passages only"
    )


class PairData(Strict):
    """Kind pair: sentence-pair files, a file of sentences, or a corpus (retrieval/training/
    pairs.py); exactly one of ``pairs``, ``sentences``, ``tables``."""

    pairs: Path | None = Field(
        default=None,
        description="a folder of sentence-pair files (STS-B SPLIT.tsv, senteval_cn "
        "*.SPLIT.data) or one such file",
    )
    sentences: Path | None = Field(
        default=None, description="simcse_unsup: a text file, one sentence a line"
    )
    tables: Path | None = Field(
        default=None,
        description="simcse_unsup: a folder from `rqa prepare`; its corpus passages are the "
        "sentences",
    )
    split: str = Field(default="train", description="the file of data.pairs to read")
    max_examples: int | None = Field(default=None, ge=1, description="take the first N only")
    label_range: tuple[float, float] | None = Field(
        default=None,
        description="the lowest and highest label there can be (STS-B: [0, 5]); labels are "
        "scaled to [0, 1] by it; default: the training file's lowest and highest",
    )
    positive_at: float | None = Field(
        default=None,
        description="a pair whose label is at least this is positive (infonce keeps only "
        "those; circle, multilabel_ce read them as 1); default: 80% up the label range "
        "(4.0 of STS-B's 0-5, 1 of 0/1 labels)",
    )

    @field_validator("label_range")
    @classmethod
    def _label_range_rises(cls, value: tuple[float, float] | None):
        if value is not None and not value[1] > value[0]:
            raise ValueError(f"{list(value)} must rise")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> PairData:
        """One source of sentences: which one is a choice across three keys."""
        sources = [k for k in ("pairs", "sentences", "tables") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError(
                "give one of data.pairs (sentence pairs), data.sentences or data.tables "
                f"(sentences for simcse_unsup); got {', '.join(sources) or 'none'}"
            )
        return self


# --- blocks of some kinds ---------------------------------------------------------------------


class ProjectorConfig(Strict):
    """A training-only MLP between the encoder and a pair loss (retrieval/training/projector.py),
    dropped at export; ``projector: {}`` takes the defaults."""

    hidden_dim: int | None = Field(default=None, ge=1, description="default: the model's dim")
    out_dim: int | None = Field(default=None, ge=1, description="default: the model's dim")


class QueueConfig(Strict):
    """A FIFO queue of past embeddings handed to the loss as extra negatives (MoCo, He et al.
    2020, without its momentum encoder; ESimCSE, Wu et al. 2022): kind dual queues passages,
    kind pair (infonce, simcse_unsup) second sentences. Its size is ``size`` rows or ``batches``
    global batches (what one step pushes from every worker); ``queue: {}`` is 2.5 batches."""

    size: int | None = Field(default=None, ge=1, description="rows kept")
    batches: float | None = Field(
        default=None,
        gt=0,
        description="rows kept, in global batches (ESimCSE: 2.5, the default when size is "
        "unset); dual: a batch is workers x batch_size x (1 + hard_negatives) passages, pair: "
        "workers x batch_size sentences",
    )

    @model_validator(mode="after")
    def _one_size(self) -> QueueConfig:
        if self.size is not None and self.batches is not None:
            raise ValueError("give size (rows) or batches (global batches), not both")
        return self

    def rows(self, per_step: int) -> int:
        """Rows kept when each step pushes ``per_step`` (at least one)."""
        if self.size is not None:
            return self.size
        return max(1, round((self.batches or DEFAULT_QUEUE_BATCHES) * per_step))


class GradCacheConfig(Strict):
    """Gradient caching (GradCache, Gao et al. 2021; retrieval/training/grad_cache.py): each
    step encodes its batch in chunks of these many rows, twice (without, then with a graph), so
    activation memory follows the chunk, not the batch, and the gradients stay those of the
    whole batch (cross-batch negatives and a MoCo queue included). Kinds dual and joint (which
    adds ``pair_chunk``); not with ZeRO stage 3. ``grad_cache: {}`` takes the defaults."""

    query_chunk: int = Field(default=16, ge=1, description="queries encoded at once")
    passage_chunk: int = Field(default=16, ge=1, description="passages encoded at once")
    keep_last: int = Field(
        default=0,
        ge=0,
        description="encode each kind's last N chunks (its longest texts) once, with their "
        "graphs kept through the step (true = 1): N forwards saved per kind, for N more chunks "
        "of activations per kind held, a constant that does not grow with the batch (0 by "
        "default: memory is what gradient caching is for)",
    )

    def chunks(self) -> str:
        return f"query chunk {self.query_chunk}, passage chunk {self.passage_chunk}"

    def summary(self) -> str:
        """How the batch is split, as the training log says it."""
        text = self.chunks()
        if self.keep_last:
            chunks = "chunk" if self.keep_last == 1 else f"{self.keep_last} chunks"
            text += f", last {chunks} encoded once (keep_last)"
        return text


class JointGradCacheConfig(GradCacheConfig):
    """Gradient caching of a joint run: the dual encoder's chunks and the re-ranker's."""

    pair_chunk: int = Field(
        default=16, ge=1, description="(query, passage) pairs the re-ranker scores at once"
    )

    def chunks(self) -> str:
        return f"{super().chunks()}, pair chunk {self.pair_chunk}"


class EvaluationConfig(Strict):
    """Evaluation on a dev set while training (retrieval/training/evaluation/), on rank 0 every
    ``every_steps`` steps and after the last; ``select: best`` exports the best step's
    weights instead of the last's. Kinds dual, joint (the retriever), cross (the re-ranker):
    nDCG@10 / MRR@10 / Recall@k of the split's qrels on at most ``max_queries`` seeded queries;
    pair: Spearman (cosine) on at most ``max_queries`` pairs of the split's file."""

    every_steps: int = Field(ge=1, description="steps between evaluations")
    split: str = Field(default="dev", description="queries-/qrels-SPLIT, or the pair file's split")
    dev: Path | None = Field(
        default=None,
        description="where the dev set lies: a tables folder (default: data.tables) or, kind "
        "pair, a folder or file of sentence pairs (default: data.pairs)",
    )
    metric: str | None = Field(
        default=None,
        description="the metric select reads: ndcg@10 (default), mrr@10, recall@K, ...; "
        "kind pair: spearman",
    )
    max_queries: int = Field(default=500, ge=1, description="queries (pairs) sampled, seeded")
    candidates: Path | None = Field(
        default=None,
        description="a candidates table of the split: dual/joint add its top `depth` of each "
        "query to the pool; cross re-ranks them (with the positives)",
    )
    depth: int = Field(default=100, ge=1, description="candidates per query read from the table")
    pool_size: int = Field(
        default=10_000,
        ge=1,
        description="without candidates: the corpus passages in the pool (all of a corpus this "
        "small, else a seeded sample) beside the queries' positives; cross: negatives per query "
        "are drawn from it",
    )
    seed: int = Field(default=0, description="draws the queries and the pool, once")
    select: Literal["best", "last"] = Field(
        default="last", description="export the best evaluated step (best) or the last (last)"
    )


# --- the keys of every kind, and the checks that span kinds ----------------------------------


def models_in(annotation: object) -> list[type[BaseModel]]:
    """The config blocks (pydantic models) a field's annotation holds, ``X | None`` included."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in models_in(arg)]


def key_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key ``model`` takes, nested ones as paths (``("data", "pairs")``)."""
    for name, field in model.model_fields.items():
        yield (*prefix, name)
        for block in models_in(field.annotation):
            yield from key_paths(block, (*prefix, name))


@functools.cache
def key_kinds() -> dict[tuple[str, ...], tuple[str, ...]]:
    """Key path -> the kinds that take it."""
    owners: dict[tuple[str, ...], list[str]] = {}
    for kind, cls in KIND_CONFIGS.items():
        for path in key_paths(cls):
            owners.setdefault(path, []).append(kind)
    return {path: tuple(kinds) for path, kinds in owners.items()}


def foreign_key(raw: dict, model: type[BaseModel], kinds: tuple[str, ...], prefix=()):
    """The first key of ``raw`` (nested ones too) that ``model`` lacks and another kind takes."""
    for key, value in raw.items():
        path = (*prefix, key)
        field = model.model_fields.get(key)
        if field is None:
            owners = key_kinds().get(path, ())
            if owners and not set(owners) & set(kinds):
                return path, owners
            continue
        if isinstance(value, dict):
            for block in models_in(field.annotation):
                found = foreign_key(value, block, kinds, path)
                if found:
                    return found
    return None


def renamed_queue_key(raw: dict) -> str | None:
    """The one-line message for a queue key of the old spelling (``moco_queue_size`` of kind
    dual; ``queue: true`` and ``queue_batches`` of kind pair), saying the new one."""
    if "moco_queue_size" in raw:
        if not raw["moco_queue_size"]:
            return "key 'moco_queue_size': renamed to queue, and 0 meant no queue; leave it out"
        return f"key 'moco_queue_size': renamed; write queue: {{size: {raw['moco_queue_size']}}}"
    if "queue_batches" in raw:
        return f"key 'queue_batches': renamed; write queue: {{batches: {raw['queue_batches']}}}"
    if raw.get("queue") is True:
        return (
            "key 'queue': now a mapping; write queue: {} (2.5 global batches), "
            "queue: {batches: B} or queue: {size: ROWS}"
        )
    if raw.get("queue") is False:
        return "key 'queue': now a mapping, and false meant no queue; leave it out"
    return None


def literal_values(annotation: object) -> tuple[str, ...]:
    """The strings of a ``Literal`` annotation (``Literal[...] | None`` included)."""
    return tuple(
        value
        for arg in get_args(annotation)
        for value in ((arg,) if isinstance(arg, str) else literal_values(arg))
    )


def check_keys(raw: object, model: type[BaseModel], kinds: tuple[str, ...]) -> None:
    """Mistakes that pydantic would report without saying what to write instead, each one line
    naming the key: a queue key of the old spelling, a key of another kind (with the kinds that
    take it), a loss that does not train these kinds (with the ones that do)."""
    if not isinstance(raw, dict):
        return
    renamed = renamed_queue_key(raw)
    if renamed:
        raise ValueError(renamed)
    found = foreign_key(raw, model, kinds)
    if found:
        path, owners = found
        takers = f"kind{'s' if len(owners) > 1 else ''} {', '.join(owners)}"
        raise ValueError(
            f"key '{'.'.join(path)}': kind {' or '.join(kinds)} does not take it ({takers} only)"
        )
    loss, allowed = raw.get("loss"), literal_values(model.model_fields["loss"].annotation)
    if loss is not None and loss not in allowed:
        raise ValueError(
            f"key 'loss': loss '{loss}' does not train a {' or '.join(kinds)} model; use one "
            f"of {', '.join(allowed)}"
        )


def check_eval_metric(kind: str, metric: str) -> None:
    """A one-line error unless ``kind``'s evaluator gives ``metric``."""
    if kind == "pair":
        if metric != "spearman":
            raise ValueError(f"key 'evaluation.metric': kind pair gives spearman, not {metric!r}")
        return
    try:
        parse_metric(metric)
    except ConfigError as err:
        raise ValueError(f"key 'evaluation.metric': {err}") from None


class TrainBase(Strict):
    """The keys of every training run: what to start from and write, the data, the loss and
    the schedule. Each kind's class adds its own keys and narrows ``data`` and ``loss``."""

    kind: str
    model: str = Field(description="HF id or local folder to start from (the dual encoder)")
    output_dir: Path
    data: ExamplesData
    loss: str
    loss_args: dict | None = Field(
        default_factory=dict,
        description="arguments of the chosen loss, checked against its constructor "
        "(retrieval/losses/arguments.py); null: none (`--set ...loss_args=null` clears a "
        "config's when another loss is chosen)",
    )
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=32, ge=1, description="examples per worker per step")
    lr: float = Field(default=2e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
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
    evaluation: EvaluationConfig | None = Field(
        default=None, description="evaluate on a dev set while training; unset: off"
    )

    @classmethod
    def kind_name(cls) -> str:
        return cls.model_fields["kind"].default

    @classmethod
    def losses(cls) -> tuple[str, ...]:
        """The registered losses that train this kind, its default first."""
        return literal_values(cls.model_fields["loss"].annotation)

    @model_validator(mode="before")
    @classmethod
    def _keys_fit_kind(cls, raw: object) -> object:
        check_keys(raw, cls, (cls.kind_name(),))
        return raw

    @field_validator("loss_args", mode="before")
    @classmethod
    def _null_is_none(cls, value: object) -> object:
        """``loss_args: null`` is no arguments: a `--set` cannot delete a key, only set it."""
        return {} if value is None else value

    @model_validator(mode="after")
    def _loss_args_fit_loss(self) -> TrainBase:
        """``loss_args`` are checked against the loss ``loss`` names: a rule across two keys."""
        name = registered_loss(self.loss, self.kind)
        try:
            checked = loss_arguments(name).model_validate(self.loss_args)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            takes = ", ".join(settable(name)) or "no arguments"
            raise ValueError(
                f"key 'loss_args.{key}': {first['msg']} (loss '{self.loss}' takes {takes})"
            ) from None
        self.loss_args = checked.model_dump(exclude_unset=True)
        return self

    @model_validator(mode="after")
    def _evaluation_fits_kind(self) -> TrainBase:
        """The metric ``evaluation.metric`` names must be one this kind's evaluator gives."""
        if self.evaluation is not None and self.evaluation.metric is not None:
            check_eval_metric(self.kind, self.evaluation.metric)
        return self

    @model_validator(mode="after")
    def _kind_is_set(self) -> TrainBase:
        """The kind counts as set even when it is the class's default, so a dump of the set
        keys (what Ray workers get: pipelines/train_launcher.py) still validates as this kind."""
        self.model_fields_set.add("kind")
        return self


MODEL_SETTINGS_HELP = "DualEncoderSettings overrides"
RANDOM_NEGATIVES_HELP = (
    "an example without negatives draws random corpus passages instead (logged); off: such "
    "examples are an error before training starts"
)
NO_DUPLICATES_HELP = (
    "each global batch (all workers) holds no two examples that share a positive passage or "
    "a query text; colliding examples wait for later batches "
    "(retrieval/training/no_duplicates.py); off: the plain seeded shuffle"
)
MASK_FALSE_NEGATIVES_HELP = (
    "a candidate passage (in-batch, another query's, or with cross_batch any worker's) that is "
    "a known positive of the query scoring it, other than its own target, leaves the softmax "
    "(retrieval/losses/false_negatives.py); a queue's passages are not checked"
)
RERANKER_HEAD_LR_HELP = (
    "learning rate of the re-ranker's new pooler + classifier (default: lr); see "
    "retrieval/training/optimizer.py"
)


class DualConfig(TrainBase):
    """A dual encoder (retriever) on queries with their positive and hard negative passages,
    the other queries' passages (and a queue's) as more negatives."""

    kind: Literal["dual"] = "dual"
    loss: Literal["cross_batch", "infonce", "margin_mse"] = "cross_batch"
    model_settings: ModelSettings = Field(
        default_factory=ModelSettings, description=MODEL_SETTINGS_HELP
    )
    hard_negatives: int = Field(default=0, ge=0, description="per query")
    random_negatives: bool = Field(default=False, description=RANDOM_NEGATIVES_HELP)
    no_duplicates: bool = Field(default=False, description=NO_DUPLICATES_HELP)
    mask_false_negatives: bool = Field(default=False, description=MASK_FALSE_NEGATIVES_HELP)
    queue: QueueConfig | None = Field(
        default=None, description="past passages as extra negatives (MoCo); unset: none"
    )
    grad_cache: GradCacheConfig | None = Field(
        default=None,
        description="gradient caching, for batches larger than memory allows (same gradients, "
        "a second forward per chunk); unset: off",
    )

    @model_validator(mode="after")
    def _margin_mse_has_scored_negatives(self) -> DualConfig:
        """margin_mse distils the teacher scores stored with each example's positives and
        negatives (denoise writes them), so every passage of a group needs one: at least one
        hard negative, none from a queue or drawn at random."""
        if self.loss != "margin_mse":
            return self
        if self.hard_negatives < 1:
            raise ValueError("key 'hard_negatives': loss 'margin_mse' needs at least 1")
        for key in ("queue", "random_negatives"):
            if getattr(self, key):
                raise ValueError(
                    f"key '{key}': loss 'margin_mse' reads a teacher score for every passage, "
                    "and these have none"
                )
        if self.mask_false_negatives:
            raise ValueError(
                "key 'mask_false_negatives': loss 'margin_mse' scores each query's own group "
                "only, so there are no in-batch negatives to mask"
            )
        return self

    def queue_rows(self, world: int) -> int:
        """The queue's rows: each step pushes every worker's passages."""
        return self.queue.rows(self.batch_size * world * (1 + self.hard_negatives))


class CrossConfig(TrainBase):
    """A cross-encoder (re-ranker) on groups of one positive and ``group_size - 1`` negatives
    per query."""

    kind: Literal["cross"] = "cross"
    loss: Literal["listwise_ce", "pointwise_bce", "listwise_ce_kl"] = Field(
        default="listwise_ce",
        description="listwise_ce, pointwise_bce, or listwise_ce_kl (listwise CE plus KL to the "
        "teacher scores stored with the examples: train_cross's are the retriever's, "
        "losses/teacher_kl.py)",
    )
    group_size: int = Field(default=4, ge=2, description="1 positive + n-1 negatives")
    cross_max_len: int = Field(default=256, ge=8, description="tokens of a (query, passage) pair")
    head_lr: float | None = Field(default=None, gt=0, description=RERANKER_HEAD_LR_HELP)
    random_negatives: bool = Field(default=False, description=RANDOM_NEGATIVES_HELP)

    @model_validator(mode="after")
    def _teacher_kl_has_scored_negatives(self) -> CrossConfig:
        """listwise_ce_kl reads a stored teacher score for every passage of a group, and a
        passage drawn at random has none."""
        if self.loss == "listwise_ce_kl" and self.random_negatives:
            raise ValueError(
                "key 'random_negatives': loss 'listwise_ce_kl' reads a teacher score for every "
                "passage, and random passages have none"
            )
        return self


class JointConfig(TrainBase):
    """A dual encoder and a re-ranker trained together on the same lists (RocketQAv2)."""

    kind: Literal["joint"] = "joint"
    cross_model: str = Field(description="the re-ranker to start from")
    loss: Literal["joint_listwise", "margin_mse"] = Field(
        default="joint_listwise",
        description="joint_listwise (RocketQAv2) or margin_mse (the retriever learns the "
        "re-ranker's detached margins; the re-ranker its listwise CE: losses/margin_mse.py)",
    )
    model_settings: ModelSettings = Field(
        default_factory=ModelSettings, description=MODEL_SETTINGS_HELP
    )
    group_size: int = Field(default=4, ge=2, description="1 positive + n-1 negatives")
    cross_max_len: int = Field(default=256, ge=8, description="tokens of a (query, passage) pair")
    cross_lr: float | None = Field(
        default=None,
        gt=0,
        description="learning rate of the re-ranker (its head too unless head_lr is set; "
        "default: lr, the retriever's); see retrieval/training/optimizer.py",
    )
    head_lr: float | None = Field(default=None, gt=0, description=RERANKER_HEAD_LR_HELP)
    random_negatives: bool = Field(default=False, description=RANDOM_NEGATIVES_HELP)
    no_duplicates: bool = Field(default=False, description=NO_DUPLICATES_HELP)
    grad_cache: JointGradCacheConfig | None = Field(
        default=None,
        description="gradient caching of both models, for batches larger than memory allows "
        "(same gradients, a second forward per chunk); unset: off",
    )


class PairConfig(TrainBase):
    """A sentence-embedding model on sentence pairs (a pair is its own group: no negatives are
    drawn), or on plain sentences (simcse_unsup)."""

    kind: Literal["pair"] = "pair"
    data: PairData
    loss: Literal[
        "cosent",
        "cosine_mse",
        "sbert_softmax",
        "infonce",
        "simcse_unsup",
        "circle",
        "multilabel_ce",
    ] = "cosent"
    model_settings: ModelSettings = Field(
        default_factory=ModelSettings, description=MODEL_SETTINGS_HELP
    )
    queue: QueueConfig | None = Field(
        default=None,
        description="infonce, simcse_unsup: past embeddings as extra negatives (MoCo / ESimCSE "
        "queue, no momentum encoder); unset: none",
    )
    projector: ProjectorConfig | None = Field(
        default=None, description="a training-only MLP (SimCLR) before the loss, dropped at export"
    )

    @model_validator(mode="after")
    def _loss_fits_queue_and_data(self) -> PairConfig:
        """Rules across keys: only some losses take a queue, and only simcse_unsup reads plain
        sentences (the others need labelled pairs)."""
        if self.queue is not None and self.loss not in QUEUE_LOSSES:
            raise ValueError(
                f"key 'queue': loss '{self.loss}' takes no extra negatives; use one of "
                f"{', '.join(QUEUE_LOSSES)}"
            )
        if self.loss not in SENTENCE_LOSSES and self.data.pairs is None:
            raise ValueError(f"key 'data.pairs': loss '{self.loss}' trains on labelled pairs")
        if self.evaluation is not None and self.evaluation.dev is None and not self.data.pairs:
            raise ValueError(
                "key 'evaluation.dev': give the sentence pairs to evaluate on (no data.pairs)"
            )
        return self

    def queue_rows(self, world: int) -> int:
        """The queue's rows: each step pushes every worker's second sentences."""
        return self.queue.rows(self.batch_size * world)


class RetroMAEConfig(TrainBase):
    """An encoder pre-trained on a corpus's passages by masked auto-encoding (RetroMAE,
    retrieval/training/retromae/)."""

    kind: Literal["retromae"] = "retromae"
    data: CorpusData
    loss: Literal["masked_lm"] = "masked_lm"
    model_settings: ModelSettings = Field(
        default_factory=ModelSettings, description=MODEL_SETTINGS_HELP
    )
    retromae: RetroMAESettings = Field(
        default_factory=RetroMAESettings, description="the mask ratios of RetroMAE pre-training"
    )
    head_lr: float | None = Field(
        default=None,
        gt=0,
        description="learning rate of the masked-LM head and the decoder (default: lr); see "
        "retrieval/training/optimizer.py",
    )

    @model_validator(mode="after")
    def _no_evaluation(self) -> RetroMAEConfig:
        if self.evaluation is not None:
            raise ValueError(
                "key 'evaluation': kind retromae has no dev metric (masked auto-encoding); "
                "evaluate the encoder it pre-trains after fine-tuning"
            )
        return self


KIND_CONFIGS: dict[str, type[TrainBase]] = {
    cls.kind_name(): cls
    for cls in (DualConfig, CrossConfig, JointConfig, PairConfig, RetroMAEConfig)
}
KINDS = tuple(KIND_CONFIGS)
LOSSES_BY_KIND = {kind: cls.losses() for kind, cls in KIND_CONFIGS.items()}


def kind_of(raw: object) -> str | None:
    """The kind a mapping or a config names (a mapping without ``kind``: dual)."""
    if isinstance(raw, dict):
        return raw.get("kind", "dual")
    return getattr(raw, "kind", None)


TrainConfig = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in KIND_CONFIGS.items())],  # noqa: UP007
    Discriminator(kind_of),
]
"""Any kind's config, keyed by ``kind``: a type for annotations and for pydantic fields."""


class _Kind(BaseModel):
    kind: Literal[KINDS]  # type: ignore[valid-type]


def validate_train_config(raw: object) -> TrainConfig:
    """``raw`` as the config of its kind; pydantic's ValidationError names the keys as they are
    written (no kind in front, as a discriminated union's errors would have)."""
    if isinstance(raw, TrainBase):
        return raw
    kind = kind_of(raw)
    if not isinstance(raw, dict) or not isinstance(kind, str) or kind not in KIND_CONFIGS:
        _Kind.model_validate({"kind": kind} if isinstance(raw, dict) else raw)
    return KIND_CONFIGS[kind].model_validate(raw)


def one_line(err: ValidationError, source: object) -> str:
    """Pydantic's multi-line report as one line naming the key (a check over several keys
    names them in its own message; a nested block's check naming a key is placed under it)."""
    first = err.errors()[0]
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    key = ".".join(str(p) for p in first["loc"])
    inner = re.match(r"key '([^']*)': (.*)", message, re.DOTALL)
    if inner:
        key, message = ".".join(k for k in (key, inner[1]) if k), inner[2]
    if not key:
        return f"{source}: {message}{more}"
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
        config = validate_train_config(raw)
    except ValidationError as err:
        raise ConfigError(one_line(err, path)) from None
    check_paths(config, path)
    return absolute_paths(config)


def local_paths(config: TrainConfig) -> dict[str, Path]:
    """The config's local files and folders by key (``data.tables``, ``deepspeed``, ...)."""
    named = {f"data.{key}": value for key, value in config.data if isinstance(value, Path)}
    if config.deepspeed is not None:
        named["deepspeed"] = config.deepspeed
    if config.evaluation is not None:
        for key, value in config.evaluation:
            if isinstance(value, Path):
                named[f"evaluation.{key}"] = value
    return named


def check_paths(config: TrainConfig, source: object) -> None:
    for key, value in local_paths(config).items():
        if not Path(value).exists():
            raise MissingInputError(f"{source}: key '{key}': {value} does not exist")


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """Workers on Ray start in another directory: make every local path absolute."""
    data = config.data.model_copy(
        update={key: value.resolve() for key, value in config.data if isinstance(value, Path)}
    )
    update = {"data": data, "output_dir": config.output_dir.resolve()}
    if config.deepspeed:
        update["deepspeed"] = config.deepspeed.resolve()
    if config.evaluation is not None:
        update["evaluation"] = config.evaluation.model_copy(
            update={k: v.resolve() for k, v in config.evaluation if isinstance(v, Path)}
        )
    for key in ("model", "cross_model"):
        value = getattr(config, key, None)
        if value and Path(value).exists():
            update[key] = str(Path(value).resolve())
    return config.model_copy(update=update)
