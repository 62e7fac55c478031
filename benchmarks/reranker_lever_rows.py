"""The re-ranker levers of benchmarks/reranker_levers.py: each one a change to train_cross alone.

A lever's `rqa run --set` overrides are computed from the config's own train_cross and mine
sections (twice its epochs, not a fixed number of epochs), so one lever means the same change
on configs/demo.yaml and on configs/scifact.yaml. docs/reranker.md lists them as untried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.config import PipelineConfig

CROSS = "stages.train_cross"


@dataclass(frozen=True)
class Lever:
    """One lever: ``sets`` gives its --set overrides for a config; ``about`` says why."""

    name: str
    sets: Callable[[PipelineConfig], tuple[str, ...]]
    about: str


def _cross(config: PipelineConfig):
    return config.stages.train_cross


def _deeper(config: PipelineConfig) -> tuple[str, ...]:
    """Twice the config's deep negatives, or as many as mine keeps from its top when it has
    none (the lever docs/reranker.md measured on SciFact, for configs that lack it)."""
    deep = _cross(config).deep_negatives
    return (f"{CROSS}.deep_negatives={2 * deep or config.stages.mine.negatives}",)


def _double_epochs(config: PipelineConfig) -> tuple[str, ...]:
    return (f"{CROSS}.train.epochs={2 * _cross(config).train.epochs}",)


def _larger_groups(config: PipelineConfig) -> tuple[str, ...]:
    """Groups twice as large; when mine keeps too few negatives for them, the rest come from
    its deeper ranks (deep_negatives), as train_cross would refuse the group otherwise."""
    group = 2 * _cross(config).train.group_size
    sets = (f"{CROSS}.train.group_size={group}",)
    short = group - 1 - config.stages.mine.negatives - _cross(config).deep_negatives
    if short > 0:
        sets += (f"{CROSS}.deep_negatives={_cross(config).deep_negatives + short}",)
    return sets


def _larger_groups_half_queries(config: PipelineConfig) -> tuple[str, ...]:
    """Groups twice as large over half the queries a step and half the epochs: the same
    steps, the same pairs a step and in all, so about the same wall time. Each query is seen
    half as often, against twice the negatives each time (docs/reranker.md: train_cross
    memorises its training queries)."""
    train = _cross(config).train
    for key in ("batch_size", "epochs"):
        if getattr(train, key) % 2:
            raise SystemExit(f"lever double_groups_half_queries: {config.name}'s train_cross "
                             f"{key} {getattr(train, key):g} does not halve")  # fmt: skip
    return (
        *_larger_groups(config),
        f"{CROSS}.train.batch_size={train.batch_size // 2}",
        f"{CROSS}.train.epochs={train.epochs // 2}",
    )


def _half_lr(config: PipelineConfig) -> tuple[str, ...]:
    """Half the encoder's and the new head's learning rates, at the same steps: the rates were
    tuned on configs/demo.yaml's one short epoch, and on SciFact the loss sits at chance for
    its first ~40 steps (docs/reranker.md)."""
    train = _cross(config).train
    sets = (f"{CROSS}.train.lr={train.lr / 2:g}",)
    if train.head_lr is not None:
        sets += (f"{CROSS}.train.head_lr={train.head_lr / 2:g}",)
    return sets


def _in_bf16(config: PipelineConfig) -> tuple[str, ...]:
    """DeepSpeed's bf16 (ZeRO 0): the module in bf16, float32 master weights and losses."""
    return (f"{CROSS}.train.deepspeed=configs/deepspeed/bf16.json",)


def _bf16_more_epochs(config: PipelineConfig) -> tuple[str, ...]:
    """1.5 times the epochs, trained in bf16 (DeepSpeed's bf16 with float32 master weights and
    losses): on a CPU with AMX, bf16 makes a train_cross step about a third cheaper (16 steps of
    configs/scifact.yaml: 123 s against 184 s), so the extra half costs about nothing."""
    epochs = 1.5 * _cross(config).train.epochs
    return (f"{CROSS}.train.epochs={epochs:g}", *_in_bf16(config))


def _base_init(config: PipelineConfig) -> tuple[str, ...]:
    if _cross(config).init == "base":
        raise SystemExit(f"lever base_init: {config.name} already starts train_cross from base")
    return (f"{CROSS}.init=base",)


LEVERS = (
    Lever(
        "double_epochs",
        _double_epochs,
        "twice the epochs over the same training queries",
    ),
    Lever(
        "double_groups",
        _larger_groups,
        "groups of twice as many passages (1 positive, the rest negatives) at the same steps",
    ),
    Lever(
        "double_groups_half_queries",
        _larger_groups_half_queries,
        "groups of twice as many passages over half the queries a step and half the epochs: "
        "the same steps and pairs",
    ),
    Lever(
        "bf16_more_epochs",
        _bf16_more_epochs,
        "1.5 x the epochs in bf16 (float32 master weights and losses): the same wall time "
        "where the CPU has AMX",
    ),
    Lever(
        "bf16_double_epochs",
        lambda c: (*_double_epochs(c), *_in_bf16(c)),
        "twice the epochs in bf16: a third more wall time where the CPU has AMX",
    ),
    Lever(
        "half_lr",
        _half_lr,
        "half the learning rates (encoder and head) at the same steps",
    ),
    Lever(
        "base_init",
        _base_init,
        "start from the base model, not train_dual_0's encoder",
    ),
    Lever(
        "deeper_negatives",
        _deeper,
        "more negatives drawn from mine's lists below the kept top ones",
    ),
    Lever(
        "pointwise_bce",
        lambda c: (f"{CROSS}.train.loss=pointwise_bce",),
        "pointwise binary cross-entropy on each pair instead of listwise softmax CE",
    ),
    Lever(
        "retriever_kl",
        lambda c: (f"{CROSS}.train.loss=listwise_ce_kl",),
        "listwise CE plus KL to the retriever's distribution over each group (mine's scores)",
    ),
    Lever(
        "double_epochs_retriever_kl",
        lambda c: (*_double_epochs(c), f"{CROSS}.train.loss=listwise_ce_kl"),
        "the two above together: does the KL add to a re-ranker trained long enough?",
    ),
    Lever(
        "longer_pairs",
        lambda c: (f"{CROSS}.train.cross_max_len={_cross(c).train.cross_max_len * 3 // 2}",),
        "pairs cut at 1.5 x the config's tokens",
    ),
)


def chosen_levers(names: str | None) -> list[Lever]:
    """The levers named in a comma-separated list (all when None); an unknown name is an
    error naming the levers there are."""
    if not names:
        return list(LEVERS)
    by_name = {lever.name: lever for lever in LEVERS}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise SystemExit(f"--levers: no lever {unknown[0]!r} (levers: {', '.join(by_name)})")
    return [by_name[name] for name in wanted]
