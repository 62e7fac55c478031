"""The rows of the RocketQA ablation (benchmarks/ablation.py): each one a set of `rqa run --set`
overrides laid over the baseline config, the stage whose dev nDCG@10 it is judged by, and why.

A row changes one thing; everything it does not change stays the baseline's, so its stages up
to the first one it changes are the baseline run's own (linked, not retrained:
benchmarks/ablation_runs.py). Stages after the judged one are switched off in the row's run
(nothing the row reports reads them), as are evaluate's zero-shot and BM25 rows.
"""

from __future__ import annotations

from dataclasses import dataclass

# How often train_dual_1 evaluates on dev in the checkpoint-selection rows: one epoch of the
# shipped configs' ~700 train queries at a global batch of 32 is 22 steps, so steps 6, 12, 18
# and the last.
EVAL_EVERY = 6
# evaluate in a row's run: only the row's retrievers (the baseline run has zero-shot and BM25),
# and the re-ranker over their top 20, not 100 (the table reads retrievers only; re-ranking 100
# SciFact passages a query costs about as much as training train_dual_1). No fusing of
# train_cross's re-ranker: a row that stops before train_joint switches that stage off, and
# fuse_train_cross refuses a run without it.
ROW_EVALUATE = (
    "stages.evaluate.zero_shot=false",
    "stages.evaluate.bm25=false",
    "stages.evaluate.rerank_depth=20",
    "stages.evaluate.fuse_train_cross=false",
)
BASELINE = "baseline"
# Positive-aware mining can keep no negative at all for a query (every mined one scores above
# 0.95 x its positive: 28 of the demo's 709 train queries), and a training stage reading mine's
# examples refuses such a query unless it may draw random corpus passages instead.
RANDOM_CROSS = "stages.train_cross.train.random_negatives=true"
RANDOM_DUAL_1 = "stages.train_dual_1.train.random_negatives=true"
# augment keeps a pseudo-query with no negative when all its other passages score within the
# margin of its top one; train_dual_2 draws random negatives for those in the shipped configs
RANDOM_JOINT = "stages.train_joint.train.random_negatives=true"


@dataclass(frozen=True)
class Row:
    """One ablation row: ``sets`` are `rqa run --set KEY=VALUE` overrides; ``stage`` is the
    stage whose dev nDCG@10 (evaluate/metrics.json) the table reports."""

    name: str
    sets: tuple[str, ...]
    stage: str
    about: str


ROWS = (
    Row(
        "undenoised",
        ("stages.denoise.enabled=false",),
        "train_dual_1",
        "denoise off: train_dual_1 on mine's raw top negatives (RocketQA: 26 vs 36 MRR@10 on "
        "MS MARCO)",
    ),
    Row(
        "positive_aware",
        (
            "stages.denoise.enabled=false",
            "stages.mine.positive_aware.max_ratio=0.95",
            RANDOM_DUAL_1,
        ),
        "train_dual_1",
        "denoise off, mine keeps negatives below 0.95 x the positive's score (NV-Retriever)",
    ),
    Row(
        "positive_aware_denoise",
        ("stages.mine.positive_aware.max_ratio=0.95", RANDOM_CROSS, RANDOM_DUAL_1),
        "train_dual_1",
        "positive-aware mining (0.95), then the re-ranker (trained on what it kept) denoises it",
    ),
    Row(
        "no_duplicates",
        ("stages.train_dual_1.train.no_duplicates=true",),
        "train_dual_1",
        "no two examples of a global batch share a positive or a query text",
    ),
    Row(
        "mask_false_negatives",
        ("stages.train_dual_1.train.mask_false_negatives=true",),
        "train_dual_1",
        "another query's passage that is a known positive of this query leaves its softmax",
    ),
    Row(
        "no_duplicates_mask",
        (
            "stages.train_dual_1.train.no_duplicates=true",
            "stages.train_dual_1.train.mask_false_negatives=true",
        ),
        "train_dual_1",
        "both: the no-duplicates sampler and the false-negative mask",
    ),
    Row(
        "joint_margin_mse",
        # margin_mse takes no loss_args: the config's detach_teacher (listwise KL's) is cleared
        ("stages.train_joint.train.loss=margin_mse", "stages.train_joint.train.loss_args=null"),
        "train_joint",
        "train_joint distils the re-ranker's detached margins (MarginMSE) instead of the "
        "listwise KL (the baseline)",
    ),
    Row(
        "joint_augmented",
        ("stages.train_joint.augmented=true", RANDOM_JOINT),
        "train_joint",
        "train_joint also trains on augment's pseudo-labelled queries (after denoise's lists, "
        "same steps): the final re-ranker meets queries beyond the labelled ones",
    ),
    Row(
        "joint_group4",
        ("stages.train_joint.train.group_size=4", "stages.train_joint.train.max_steps=40"),
        "train_joint",
        "train_joint on groups of 4 (3 of denoise's negatives a query) for twice the steps, as "
        "shipped until 2026-12-05: the same pairs scored, so the same wall time",
    ),
    Row(
        "select_last",
        (
            f"stages.train_dual_1.train.evaluation.every_steps={EVAL_EVERY}",
            "stages.train_dual_1.train.evaluation.select=last",
        ),
        "train_dual_1",
        f"dev evaluation every {EVAL_EVERY} steps, last step exported (a control: the "
        "baseline's weights)",
    ),
    Row(
        "select_best",
        (
            f"stages.train_dual_1.train.evaluation.every_steps={EVAL_EVERY}",
            "stages.train_dual_1.train.evaluation.select=best",
        ),
        "train_dual_1",
        f"dev evaluation every {EVAL_EVERY} steps, best step's weights exported (chosen on the "
        "dev queries it is scored on: an upper bound)",
    ),
)


def chosen_rows(names: str | None) -> list[Row]:
    """The rows named in a comma-separated list (all when None); an unknown name is an error
    naming the rows there are."""
    if not names:
        return list(ROWS)
    by_name = {row.name: row for row in ROWS}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_name and name != BASELINE]
    if unknown:
        raise SystemExit(f"--rows: no row {unknown[0]!r} (rows: {', '.join(by_name)})")
    return [by_name[name] for name in wanted if name != BASELINE]


def seed_set(seed: int) -> str:
    return f"seed={seed}"
