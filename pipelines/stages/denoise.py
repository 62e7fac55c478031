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
The denoised examples carry the re-ranker's logits of their positives and negatives
(``positive_scores``, ``negative_scores``): a dual stage with ``loss: margin_mse`` distils them.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipelines.config import PipelineConfig
from pipelines.inference.steps import score_lists
from pipelines.stages.ce_scores import sigmoid
from pipelines.stages.context import StageContext
from pipelines.stages.spec import Output, StageSpec
from retrieval.tables.schemas import EXAMPLES, SCORED_EXAMPLES
from retrieval.tables.store import iter_rows, iter_shards, write_table


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


CHUNK_QUERIES = 4096  # examples decided at a time: memory follows this, not the train set
DECISIONS = pa.schema([*SCORED_EXAMPLES, ("joint_negatives", pa.list_(pa.string()))])


def decide(row: dict, logits: dict[str, float], section) -> tuple[dict, int]:
    """One mined example with its denoised negatives, the re-ranker's logits of its positives
    and those negatives (the teacher scores MarginMSE distils), and RocketQAv2's hybrid list
    (denoised plus the first ``undenoised`` mined ones); and how many were dropped as false
    negatives."""
    if section.mode == "relative":
        kept, dropped = split_relative(row["negatives"], row["positives"], logits, section.margin)
    else:
        kept, dropped = split_by_probability(
            row["negatives"], logits, section.negative_below, section.positive_above
        )
    joint = list(dict.fromkeys(kept + row["negatives"][: section.undenoised]))
    scores = {
        "positive_scores": [logits.get(p) for p in row["positives"]],
        "negative_scores": [logits[p] for p in kept],  # a kept negative was scored
    }
    return {**row, "negatives": kept, **scores, "joint_negatives": joint}, len(dropped)


def decided_chunks(ctx: StageContext, scores: Path, counts: Counter) -> Iterator[pa.Table]:
    """The mined examples, a chunk at a time, each row beside its re-ranker logits (the
    ``scores`` table is in the examples' row order) and decided."""
    section, chunk = ctx.section, []
    for row, scored in zip(iter_rows(ctx.path("examples")), iter_rows(scores), strict=True):
        if row["qid"] != scored["qid"]:
            raise RuntimeError(f"{scores}: row for {scored['qid']} beside {row['qid']}")
        out, dropped = decide(row, dict(zip(scored["pids"], scored["scores"])), section)
        counts.update(
            mined_negatives=len(row["negatives"]),
            denoised_negatives=len(out["negatives"]),
            dropped_false_negatives=dropped,
        )
        chunk.append(out)
        if len(chunk) == CHUNK_QUERIES:
            yield pa.Table.from_pylist(chunk, schema=DECISIONS)
            chunk = []
    if chunk:
        yield pa.Table.from_pylist(chunk, schema=DECISIONS)


def score_examples(ctx: StageContext) -> Path:
    """The re-ranker's logit of every mined negative and every positive of every example (the
    positives: for ``relative`` and as teacher scores; one a query beside ~30 negatives),
    through the inference layer, as a table in ctx.work."""
    columns = ["negatives", "positives"]
    scores = ctx.work / "scores"
    shutil.rmtree(scores, ignore_errors=True)
    score_lists(
        ctx.path("cross_model"), ctx.path("examples"), columns, ctx.path("corpus"),
        ctx.path("queries"), scores, ctx.section.inference(), ctx.config.precision,
        parts=ctx.parts("scores"),
    )  # fmt: skip
    return scores


def run(ctx: StageContext) -> dict:
    split = ctx.config.data.train_split
    counts: Counter = Counter()
    decisions = ctx.work / "decisions"
    shutil.rmtree(decisions, ignore_errors=True)
    write_table(decisions, decided_chunks(ctx, score_examples(ctx), counts), DECISIONS)
    ctx.out.mkdir(parents=True)
    columns = ["qid", "query", "positives"]
    write_table(
        ctx.out / f"examples-{split}",
        (t.select(SCORED_EXAMPLES.names) for t in iter_shards(decisions)),
        SCORED_EXAMPLES,
    )
    write_table(
        ctx.out / f"examples-joint-{split}",
        (
            t.select([*columns, "joint_negatives"]).rename_columns([*columns, "negatives"])
            for t in iter_shards(decisions)
        ),
        EXAMPLES,
    )
    return {
        key: counts[key]
        for key in ("mined_negatives", "denoised_negatives", "dropped_false_negatives")
    }
