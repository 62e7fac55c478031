"""The pipeline YAML as typed objects: data, models, Ray, and one section per stage.

Validated before any work: an unknown key, a wrong value or a missing path is one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from pipelines.inference.settings import InferenceSettings
from pipelines.launch_settings import (
    DEFAULT_MAX_FAILURES,
    MAX_FAILURES_HELP,
    STORAGE_PATH_HELP,
    LaunchSettings,
    per_worker_batch,
    storage_location,
)
from pipelines.overrides import merged
from retrieval.errors import ConfigError, MissingInputError
from retrieval.training.config import (
    KIND_CONFIGS,
    Strict,
    check_keys,
    one_line,
    read_yaml_mapping,
    validate_train_config,
)
from retrieval.training.model_settings import ModelSettings
from retrieval.training.retromae.settings import RetroMAESettings

STAGE_ORDER = (
    "prepare",
    "pretrain",
    "train_dual_0",
    "mine",
    "train_cross",
    "denoise",
    "train_dual_1",
    "augment",
    "train_dual_2",
    "train_joint",
    "evaluate",
)
PRESETS = {
    "rocketqa": set(STAGE_ORDER) - {"pretrain", "train_joint"},
    "rocketqav2": {
        "prepare", "train_dual_0", "mine", "train_cross", "denoise", "train_joint", "evaluate",
    },
}  # fmt: skip


class DataSection(Strict):
    beir: Path | None = Field(default=None, description="a BEIR folder (corpus, queries, qrels)")
    tables: Path | None = Field(default=None, description="or a folder from `rqa prepare`")
    train_split: str = "train"
    eval_split: str = "dev"
    max_corpus: int | None = Field(
        default=None, ge=1, description="keep every judged passage plus the first N others"
    )


class RaySection(Strict):
    """The Ray cluster, and the Ray Train settings every training stage shares. They live here,
    not in the stages' sections, so that they stay out of the stages' fingerprints: where Ray
    Train keeps its records and how often it restarts lost workers change nothing trained."""

    address: str | None = Field(default=None, description="join a cluster; None = local Ray")
    num_cpus: int | None = None
    storage_path: str | None = Field(default=None, description=STORAGE_PATH_HELP)
    max_failures: int = Field(default=DEFAULT_MAX_FAILURES, ge=-1, description=MAX_FAILURES_HELP)

    @field_validator("storage_path")
    @classmethod
    def _storage_path(cls, value: str | None) -> str | None:
        return storage_location(value)

    def launch_keys(self) -> dict:
        """The LaunchSettings keys each training stage takes from this section."""
        return {
            "ray_address": self.address,
            "storage_path": self.storage_path,
            "max_failures": self.max_failures,
        }


# Keys of a training stage's ``train`` block: those of the library's config of the stage's
# training kind, less what the pipeline sets itself, plus how to launch (workers, launcher); the
# cluster-wide ones come from ``ray``.
_LAUNCH_KEYS_FROM_RAY = set(RaySection().launch_keys())
_TRAIN_KEYS_SET_BY_STAGE = {"model", "cross_model", "output_dir", "data", "kind", "retromae"}
# The training kind of each training stage (pretrain's follows its method: PRETRAIN_METHODS).
STAGE_KINDS = {
    "train_dual_0": "dual",
    "train_cross": "cross",
    "train_dual_1": "dual",
    "train_dual_2": "dual",
    "train_joint": "joint",
}


class StageTrain(Strict):
    """The base of a stage's ``train`` block: a key of another training kind, a renamed key or
    a loss of another kind is one line naming it, as in a training YAML."""

    kinds: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _keys_fit_kind(cls, raw: object) -> object:
        if isinstance(raw, dict):  # the keys the stage sets: pydantic's own "not permitted"
            check_keys({k: v for k, v in raw.items() if k not in _TRAIN_KEYS_SET_BY_STAGE},
                       cls, cls.kinds)  # fmt: skip
        return raw


def stage_train(name: str, *kinds: str) -> type[StageTrain]:
    """The ``train`` block of a stage that trains one of ``kinds``: their keys, less those the
    stage sets, plus the launch keys; with two kinds, ``loss`` takes the losses of both and no
    default (the stage's method chooses)."""
    fields: dict = {}
    for kind in kinds:
        for key, field in KIND_CONFIGS[kind].model_fields.items():
            if key not in _TRAIN_KEYS_SET_BY_STAGE:
                fields.setdefault(key, (field.annotation, field))
    if len(kinds) > 1:
        losses = tuple(loss for kind in kinds for loss in KIND_CONFIGS[kind].losses())
        fields["loss"] = (
            Literal[losses] | None,
            Field(default=None, description="unset: the one the stage's method trains with"),
        )
    for key, field in LaunchSettings.model_fields.items():
        if key not in _LAUNCH_KEYS_FROM_RAY:
            fields[key] = (field.annotation, field)
    base = type(f"{name}Base", (StageTrain,), {"kinds": kinds, "__module__": __name__})
    return create_model(name, __base__=base, **fields)


DualStageTrain = stage_train("DualStageTrain", "dual")
CrossStageTrain = stage_train("CrossStageTrain", "cross")
JointStageTrain = stage_train("JointStageTrain", "joint")
PretrainStageTrain = stage_train("PretrainStageTrain", "retromae", "pair")


class Stage(Strict):
    enabled: bool | None = Field(default=None, description="None: as the preset says")


class TrainStage(Stage):
    """A training stage: ``train`` holds the keys of the stage's training kind (epochs,
    batch_size, lr, loss, ...: retrieval/training/config.py) and launch keys (workers,
    launcher), each typed and checked when the config is read; a key of another kind is
    refused (``group_size`` in a dual stage)."""

    init: Literal["base", "previous"] = Field(
        default="base", description="start from the base model or the previous stage's model"
    )
    bm25_negatives: int = Field(default=0, ge=0, description="train_dual_0: BM25 hard negatives")
    deep_negatives: int = Field(
        default=0,
        ge=0,
        description="train_cross: N more negatives drawn from mine's lists below the kept top ones",
    )


class DualTrainStage(TrainStage):
    train: DualStageTrain = Field(default_factory=DualStageTrain)


class CrossTrainStage(TrainStage):
    train: CrossStageTrain = Field(default_factory=CrossStageTrain)


class JointTrainStage(TrainStage):
    train: JointStageTrain = Field(default_factory=JointStageTrain)
    augmented: bool = Field(
        default=False,
        description="also train on augment's pseudo-labelled examples (RocketQA's augmentation, "
        "which otherwise only train_dual_2 sees): the final re-ranker meets new queries too",
    )


# Domain pre-training methods: the training kind and loss each one runs.
PRETRAIN_METHODS = {"retromae": ("retromae", "masked_lm"), "simcse": ("pair", "simcse_unsup")}


class PretrainStage(Stage, RetroMAESettings):
    """Domain pre-training of the base model on the run's own corpus, before train_dual_0 (off
    in the presets): ``retromae``, masked auto-encoding (retrieval/training/retromae/, mask
    ratios below), or ``simcse``, unsupervised SimCSE over the passages (pair training). Every
    dual stage that starts from the base model then starts from this stage's model."""

    method: Literal["retromae", "simcse"] = Field(
        default="retromae",
        description="retromae | simcse (see docs/pipeline.md, The pretrain stage)",
    )
    train: PretrainStageTrain = Field(default_factory=PretrainStageTrain)

    @model_validator(mode="after")
    def _keys_fit_method(self) -> PretrainStage:
        masking = sorted(set(RetroMAESettings.model_fields) & self.model_fields_set)
        if self.method != "retromae" and masking:
            raise ValueError(f"{masking[0]}: only method retromae masks passages")
        loss = PRETRAIN_METHODS[self.method][1]
        if "loss" in self.train.model_fields_set and self.train.loss != loss:
            raise ValueError(f"train.loss: method {self.method} trains with {loss}")
        return self

    def method_keys(self) -> dict:
        """The training config keys the method sets: kind, loss and (retromae) the mask ratios."""
        kind, loss = PRETRAIN_METHODS[self.method]
        keys = {"kind": kind, "loss": loss}
        if kind == "retromae":
            keys["retromae"] = self.model_dump(include=set(RetroMAESettings.model_fields))
        return keys


class SearchSettings(Strict):
    """How a stage searches (pipelines/inference/search.py): the FAISS index type, FAISS on GPU,
    and how the work is split across the stage's ``actors`` searchers."""

    factory: str = Field(default="Flat", description="FAISS index factory string per searcher")
    faiss_gpu: bool = Field(default=False, description="search on GPU (a GPU build of faiss)")
    split: Literal["auto", "queries", "corpus"] = Field(
        default="auto",
        description="queries: every searcher holds the whole index and searches its share of "
        "the queries; corpus: each holds a block of the corpus and the driver merges; auto: "
        "queries when the index fits searcher_memory_gb",
    )
    searcher_memory_gb: float = Field(
        default=40.0, gt=0, description="the largest index one searcher may hold (split: auto)"
    )

    def search_keys(self) -> dict:
        """The keyword arguments of search_table these settings give."""
        return {"factory": self.factory, "use_gpu": self.faiss_gpu, "split": self.split,
                "memory_gb": self.searcher_memory_gb}  # fmt: skip


class PositiveAwareRule(Strict):
    """``stages.mine.positive_aware`` (NV-Retriever's positive-aware mining; pipelines/stages/
    positive_aware.py): a negative is kept only when its retriever score is below ``max_ratio``
    x the positive's score and ``margin`` below it (each when set), after the top
    ``range_min`` non-positive candidates are skipped. Several positives: the lowest score."""

    max_ratio: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="keep a negative scored below this fraction of the positive's score "
        "(NV-Retriever's TopK-PercPos: 0.95); unset: no ratio rule",
    )
    margin: float | None = Field(
        default=None,
        ge=0,
        description="keep a negative scored at least this far below the positive's score "
        "(TopK-MarginPos); unset: no margin rule",
    )
    range_min: int = Field(
        default=0,
        ge=0,
        description="skip the top N non-positive candidates (the likeliest false negatives)",
    )

    @model_validator(mode="after")
    def _some_rule(self) -> PositiveAwareRule:
        if self.max_ratio is None and self.margin is None and self.range_min == 0:
            raise ValueError("give max_ratio, margin or range_min (all unset filters nothing)")
        return self

    def needs_scores(self) -> bool:
        """Whether the rule compares with the positive's score (range_min alone does not)."""
        return self.max_ratio is not None or self.margin is not None


class MineStage(Stage, InferenceSettings, SearchSettings):
    depth: int = Field(default=100, ge=1, description="retrieve this many per train query")
    negatives: int = Field(default=30, ge=1, description="keep the top N non-positives")
    title_queries: int = Field(
        default=0,
        ge=0,
        description="also mine N corpus titles as queries, each with its own passage as "
        "positive; train_cross trains on them too (pipelines/stages/title_queries.py)",
    )
    positive_aware: PositiveAwareRule | None = Field(
        default=None,
        description="keep only negatives the retriever scores clearly below the positive "
        "(NV-Retriever); unset: the top non-positives, as RocketQA",
    )


class DenoiseStage(Stage, InferenceSettings):
    """RocketQA: a mined passage whose cross-encoder probability is above ``positive_above`` is
    a likely false negative and dropped; below ``negative_below`` it is a denoised negative.
    ``mode: relative`` compares logits with the query's positives instead (stages/denoise.py)."""

    mode: Literal["probability", "relative"] = "probability"
    margin: float = Field(default=1.0, ge=0, description="relative: logits below the positives")
    negative_below: float = Field(default=0.1, ge=0, le=1)
    positive_above: float = Field(default=0.9, ge=0, le=1)
    undenoised: int = Field(default=8, ge=0, description="train_joint: undenoised negatives kept")


class AugmentStage(Stage, InferenceSettings, SearchSettings):
    mode: Literal["probability", "relative"] = "probability"
    margin: float = Field(default=1.0, ge=0, description="relative: logits below the top one")
    queries_file: Path | None = Field(default=None, description="unlabeled queries, one a line")
    from_corpus: int = Field(default=0, ge=0, description="pseudo-queries: titles of N passages")
    depth: int = Field(default=20, ge=1)
    positive_above: float = Field(default=0.9, ge=0, le=1)
    negative_below: float = Field(default=0.1, ge=0, le=1)
    max_negatives: int = Field(default=4, ge=1)


class EvaluateStage(Stage, InferenceSettings, SearchSettings):
    k: int = Field(default=100, ge=1)
    rerank_depth: int = Field(default=100, ge=1)
    bm25: bool = True
    zero_shot: bool = True
    fuse_train_cross: bool = Field(
        default=False,
        description="also re-rank with train_cross's re-ranker and fuse both re-rankers with "
        "the retriever (RRF); needs train_cross and train_joint",
    )


class Stages(Strict):
    prepare: Stage = Stage()
    pretrain: PretrainStage = PretrainStage()
    train_dual_0: DualTrainStage = DualTrainStage()
    mine: MineStage = MineStage()
    train_cross: CrossTrainStage = CrossTrainStage()
    denoise: DenoiseStage = DenoiseStage()
    train_dual_1: DualTrainStage = DualTrainStage()
    augment: AugmentStage = AugmentStage()
    train_dual_2: DualTrainStage = DualTrainStage()
    train_joint: JointTrainStage = JointTrainStage()
    evaluate: EvaluateStage = EvaluateStage()


class PipelineConfig(Strict):
    name: str
    run_dir: Path | None = Field(default=None, description="default runs/NAME")
    preset: Literal["rocketqa", "rocketqav2"] = "rocketqa"
    model: str = Field(description="dual encoder to start from (HF id or folder)")
    cross_model: str | None = Field(default=None, description="default: the same as model")
    model_settings: ModelSettings = Field(
        default_factory=ModelSettings, description="DualEncoderSettings overrides"
    )
    data: DataSection
    ray: RaySection = RaySection()
    stages: Stages = Stages()
    seed: int = 42
    precision: Literal["fp32", "bf16", "auto"] = Field(
        default="auto",
        description="inference precision of encoding and cross-encoder scoring (mine, denoise, "
        "augment, evaluate): auto = bf16 where the CPU/GPU runs it natively",
    )

    def enabled(self, stage: str) -> bool:
        flag = getattr(self.stages, stage).enabled
        return flag if flag is not None else stage in PRESETS[self.preset]

    def enabled_stages(self) -> list[str]:
        return [s for s in STAGE_ORDER if self.enabled(s)]

    def resolved_run_dir(self) -> Path:
        return (self.run_dir or Path("runs") / self.name).resolve()


def check_train_sections(config: PipelineConfig, source: object) -> None:
    """Validate each training stage's ``train`` as the training config of its kind (the loss
    fits the model, ``loss_args`` fit the loss), naming the stage."""
    for stage in ("pretrain", *STAGE_KINDS):
        section = getattr(config.stages, stage).train.model_dump(exclude_unset=True)
        section = {k: v for k, v in section.items() if k not in LaunchSettings.model_fields}
        if stage == "pretrain":
            keys = config.stages.pretrain.method_keys()
        else:
            keys = {"kind": STAGE_KINDS[stage]}
        probe = {"model": "m", "output_dir": ".", "data": {"tables": "."}}
        if keys["kind"] == "joint":
            probe["cross_model"] = "m"
        try:
            checked = validate_train_config({**probe, **keys, **section})
        except ValidationError as err:
            raise ConfigError(one_line(err, f"{source}: stages.{stage}.train")) from None
        launch = LaunchSettings.model_validate(
            getattr(config.stages, stage).train.model_dump(
                exclude_unset=True, include=set(LaunchSettings.model_fields)
            )
        )
        if launch.workers != "auto":  # else the cluster's GPUs decide, at launch
            per_worker_batch(checked, launch, f"{source}: stages.{stage}.train")


def load_pipeline_config(
    path: str | Path, data_beir: str | Path | None = None, changes: dict | None = None
) -> PipelineConfig:
    """Read and validate a pipeline YAML; ``changes`` (``rqa run --set``, nested) are laid
    over it and ``data_beir`` replaces its data folder (``rqa run --data-beir``, e.g. a
    downloaded copy), before the checks."""
    path = Path(path)
    raw = merged(read_yaml_mapping(path), changes or {})
    if data_beir is not None:
        data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
        raw["data"] = {**{k: v for k, v in data.items() if k != "tables"}, "beir": str(data_beir)}
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(one_line(err, path)) from None
    check_train_sections(config, path)
    check_runnable(config, path)
    check_data(config, path)
    return config


# train_cross trains on mine's examples and train_joint on denoise's lists of mined negatives
# (denoised + undenoised): both hold at most stages.mine.negatives negatives per query
# (train_cross also its deep_negatives).
GROUPS_OF_MINED_NEGATIVES = ("train_cross", "train_joint")


def check_runnable(config: PipelineConfig, source: object) -> None:
    """Settings that validate one by one but cannot run together, refused in one line before
    any work: augmentation with no source of queries (or none run for train_joint to read),
    and a training group (1 positive + group_size - 1 negatives) larger than the negatives its
    examples can hold."""
    augment = config.stages.augment
    if config.enabled("augment") and augment.queries_file is None and not augment.from_corpus:
        raise ConfigError(
            f"{source}: key 'stages.augment': augment is enabled but has no queries; set "
            "stages.augment.queries_file or stages.augment.from_corpus, or enabled: false"
        )
    joint = config.stages.train_joint
    if config.enabled("train_joint") and joint.augmented and not config.enabled("augment"):
        raise ConfigError(
            f"{source}: key 'stages.train_joint.augmented': it trains on augment's examples, "
            "but augment is off; enable augment or set augmented: false"
        )
    fuse = config.stages.evaluate.fuse_train_cross
    if fuse and not (config.enabled("train_cross") and config.enabled("train_joint")):
        raise ConfigError(
            f"{source}: key 'stages.evaluate.fuse_train_cross': it fuses train_cross's "
            "re-ranker with train_joint's, but one of the two stages is off"
        )
    for name in type(config.stages).model_fields:
        section = getattr(config.stages, name)
        if name != "train_cross" and getattr(section, "deep_negatives", 0):
            raise ConfigError(
                f"{source}: key 'stages.{name}.deep_negatives': only train_cross draws deep "
                "negatives (from mine's lists)"
            )
    for stage, kind in STAGE_KINDS.items():
        train = getattr(config.stages, stage).train
        why = unscored_examples(config, stage) if kind == "dual" else None
        if config.enabled(stage) and train.loss == "margin_mse" and why:
            raise ConfigError(
                f"{source}: key 'stages.{stage}.train.loss': margin_mse distils the re-ranker "
                f"scores denoise stores with its examples, but {why}"
            )
    for stage in GROUPS_OF_MINED_NEGATIVES:
        if not (config.enabled(stage) and config.enabled("mine")):
            continue
        group = getattr(config.stages, stage).train.group_size
        pool = config.stages.mine.negatives
        if stage == "train_cross":
            pool += config.stages.train_cross.deep_negatives
        if group - 1 > pool:
            raise ConfigError(
                f"{source}: key 'stages.{stage}.train.group_size': {group} needs {group - 1} "
                f"negatives per query but stages.mine.negatives keeps at most {pool}; lower "
                f"the group_size or raise stages.mine.negatives"
            )


def unscored_examples(config: PipelineConfig, stage: str) -> str | None:
    """Why a dual stage's examples carry no re-ranker scores for margin_mse (None: they do;
    only denoise writes them)."""
    if stage == "train_dual_0":
        return "train_dual_0 trains before any re-ranker"
    if not config.enabled("denoise"):
        return "denoise is off"
    if stage == "train_dual_2" and config.enabled("augment"):
        return "augment's examples have none"
    return None


def check_data(config: PipelineConfig, source: object) -> None:
    data = config.data
    if (data.beir is None) == (data.tables is None):
        raise ConfigError(f"{source}: key 'data': give exactly one of data.beir, data.tables")
    folder = data.beir or data.tables
    if not folder.exists():
        raise MissingInputError(
            f"{source}: key 'data.{'beir' if data.beir else 'tables'}': {folder} does not exist"
        )
    queries = config.stages.augment.queries_file
    if config.enabled("augment") and queries is not None and not queries.is_file():
        raise MissingInputError(f"{source}: key 'stages.augment.queries_file': {queries} not found")
