"""Stage denoise (RocketQA): the cross-encoder scores every mined negative; confident
negatives are kept, confident positives are dropped as likely false negatives.

Two ways to tell them apart (``stages.denoise.mode``):
- ``probability`` (RocketQA): sigmoid(logit) below ``negative_below`` is a negative, above
  ``positive_above`` a false negative. Needs a re-ranker trained pointwise to calibration.
- ``relative``: against the query's own labelled positives. A mined passage the re-ranker scores
  at least as high as the lowest-scoring positive is a likely false negative; one scored
  ``margin`` logits below it is a negative; in between is left out as unsure. Needs only a
  re-ranker that orders passages well (as NV-Retriever's positive-aware mining does).

Also writes the hybrid lists of RocketQAv2: denoised negatives plus undenoised retrieved ones.
"""

from __future__ import annotations

from pipelines.config import PipelineConfig
from pipelines.stages.ce_scores import ce_logits, sigmoid
from pipelines.stages.context import StageContext
from pipelines.stages.spec import Output, StageSpec
from retrieval.tables.schemas import EXAMPLES
from retrieval.tables.store import read_table, write_table


def split_by_probability(
    negatives: list[str], logits: dict[str, float], below: float, above: float
) -> tuple[list[str], list[str]]:
    """(denoised negatives, dropped likely false negatives), each in retrieval order."""
    probs = {pid: sigmoid(x) for pid, x in logits.items()}
    kept = [p for p in negatives if probs.get(p, 1.0) < below]
    dropped = [p for p in negatives if probs.get(p, 0.0) > above]
    return kept, dropped


def split_relative(
    negatives: list[str], positives: list[str], logits: dict[str, float], margin: float
) -> tuple[list[str], list[str]]:
    """(negatives scored ``margin`` below every positive, negatives scored at or above the
    lowest positive), each in retrieval order; unscored passages go to neither."""
    scored = [logits[p] for p in positives if p in logits]
    if not scored:
        return [], []
    floor = min(scored)
    kept = [p for p in negatives if p in logits and logits[p] < floor - margin]
    dropped = [p for p in negatives if p in logits and logits[p] >= floor]
    return kept, dropped


def spec(config: PipelineConfig, name: str) -> StageSpec:
    split = config.data.train_split
    return StageSpec(
        reads={
            "corpus": Output("prepare", "corpus"),
            "queries": Output("prepare", f"queries-{split}"),
            "examples": Output("mine", f"examples-{split}"),
            "cross_model": Output("train_cross", "model"),
        },
        writes=(f"examples-{split}", f"examples-joint-{split}"),
    )


def run(ctx: StageContext) -> dict:
    section, split = ctx.section, ctx.config.data.train_split
    examples = read_table(ctx.path("examples")).to_pylist()
    relative = section.mode == "relative"
    lists = {
        row["qid"]: row["negatives"] + (row["positives"] if relative else []) for row in examples
    }
    logits = ce_logits(
        ctx.path("cross_model"),
        lists,
        ctx.path("corpus"),
        ctx.path("queries"),
        section.batch_size,
        ctx.config.precision,
    )
    denoised, joint, dropped_total, mined_total = [], [], 0, 0
    for row in examples:
        scores = logits.get(row["qid"], {})
        if relative:
            kept, dropped = split_relative(
                row["negatives"], row["positives"], scores, section.margin
            )
        else:
            kept, dropped = split_by_probability(
                row["negatives"], scores, section.negative_below, section.positive_above
            )
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
