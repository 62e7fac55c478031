"""Stage denoise (RocketQA): the cross-encoder scores every mined negative; confident
negatives are kept, confident positives are dropped as likely false negatives.

Also writes the hybrid lists of RocketQAv2: denoised negatives plus undenoised retrieved ones.
"""

from __future__ import annotations

from pipelines.stages.ce_scores import ce_probabilities
from pipelines.stages.context import StageContext
from retrieval.tables.schemas import EXAMPLES
from retrieval.tables.store import read_table, write_table


def split_by_probability(
    negatives: list[str], probs: dict[str, float], below: float, above: float
) -> tuple[list[str], list[str]]:
    """(denoised negatives, dropped likely false negatives), each in retrieval order."""
    kept = [p for p in negatives if probs.get(p, 1.0) < below]
    dropped = [p for p in negatives if probs.get(p, 0.0) > above]
    return kept, dropped


def run(ctx: StageContext) -> dict:
    section, split = ctx.section, ctx.config.data.train_split
    examples = read_table(ctx.stage_dir("mine") / f"examples-{split}").to_pylist()
    probs = ce_probabilities(
        ctx.stage_dir("train_cross") / "model",
        {row["qid"]: row["negatives"] for row in examples},
        ctx.tables / "corpus",
        ctx.tables / f"queries-{split}",
        section.batch_size,
    )
    denoised, joint, dropped_total, mined_total = [], [], 0, 0
    for row in examples:
        kept, dropped = split_by_probability(
            row["negatives"], probs.get(row["qid"], {}), section.negative_below,
            section.positive_above,
        )  # fmt: skip
        mined_total += len(row["negatives"])
        dropped_total += len(dropped)
        denoised.append({**row, "negatives": kept})
        raw = row["negatives"][: section.undenoised]
        joint.append({**row, "negatives": list(dict.fromkeys(kept + raw))})
    ctx.out.mkdir(parents=True)
    write_table(ctx.out / f"examples-{split}", denoised, EXAMPLES)
    write_table(ctx.out / f"examples-joint-{split}", joint, EXAMPLES)
    kept_total = sum(len(r["negatives"]) for r in denoised)
    return {
        "mined_negatives": mined_total,
        "denoised_negatives": kept_total,
        "dropped_false_negatives": dropped_total,
    }
