"""Stage augment (RocketQA): unlabeled queries are retrieved by the current dual encoder and
pseudo-labelled by the cross-encoder: confident positives and negatives become new examples
(``stages.augment.mode``: RocketQA's probability thresholds, or ``relative``; see pseudo_labels).

Queries come from a file (one a line) or are derived from the corpus (passage titles).
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from pipelines.config import PipelineConfig
from pipelines.inference.search import search_table
from pipelines.inference.steps import encode_queries_table, score_lists
from pipelines.stages import last_dual_before
from pipelines.stages.ce_scores import sigmoid
from pipelines.stages.context import StageContext
from pipelines.stages.corpus_vectors import embeddings_source, encode_stage_corpus
from pipelines.stages.spec import External, Output, StageSpec
from pipelines.stages.titles import drawn_titles
from retrieval.errors import ConfigError
from retrieval.tables.schemas import EXAMPLES, QUERIES
from retrieval.tables.store import iter_rows, write_table


def unlabeled_queries(ctx: StageContext) -> list[str]:
    section = ctx.section
    texts: list[str] = []
    if "queries_file" in ctx.inputs:
        lines = ctx.path("queries_file").read_text(encoding="utf-8").splitlines()
        texts += [line.strip() for line in lines if line.strip()]
    if section.from_corpus:
        drawn = drawn_titles(ctx.path("corpus"), section.from_corpus, ctx.config.seed)
        texts += [title for _, title in drawn]
    if not texts:
        raise ConfigError("stage augment: set stages.augment.queries_file or from_corpus")
    return list(dict.fromkeys(texts))


def spec(config: PipelineConfig, name: str) -> StageSpec:
    reads = {
        "corpus": Output("prepare", "corpus"),
        "model": Output(last_dual_before(config, name), "model"),
        "cross_model": Output("train_cross", "model"),
    }
    if config.stages.augment.queries_file is not None:
        reads["queries_file"] = External(config.stages.augment.queries_file)
    writes = ("queries-augmented", "examples-augmented")
    reuse = embeddings_source(config, last_dual_before(config, name), name)
    if reuse is not None:
        reads["embeddings"] = reuse  # the corpus by the same model: not encoded again
    else:
        writes = (*writes, "embeddings")
    return StageSpec(reads=reads, writes=writes)


def run(ctx: StageContext) -> dict:
    section, settings, precision = ctx.section, ctx.section.inference(), ctx.config.precision
    texts = unlabeled_queries(ctx)
    ctx.out.mkdir(parents=True)
    queries = ctx.out / "queries-augmented"
    rows = ({"qid": f"aug-{i}", "text": t} for i, t in enumerate(texts))
    write_table(queries, rows, QUERIES)
    model_dir = ctx.path("model")
    embeddings = ctx.inputs.get("embeddings") or ctx.out / "embeddings"
    if "embeddings" not in ctx.inputs:
        encode_stage_corpus(ctx, ctx.path("corpus"), model_dir, embeddings)
    vectors, candidates, scores = (ctx.work / n for n in ("query-vectors", "candidates", "scores"))
    for folder in (vectors, candidates, scores):
        shutil.rmtree(folder, ignore_errors=True)
    encode_queries_table(model_dir, queries, vectors, settings, precision,
                         parts=ctx.parts("query-vectors"))  # fmt: skip
    search_table(vectors, embeddings, section.depth, settings, candidates,
                 parts=ctx.parts("candidates"), **section.search_keys())  # fmt: skip
    score_lists(ctx.path("cross_model"), candidates, ["pids"], ctx.path("corpus"), queries,
                scores, settings, precision, parts=ctx.parts("scores"))  # fmt: skip
    kept = Counter()
    write_table(ctx.out / "examples-augmented", labelled(queries, scores, section, kept), EXAMPLES)
    return {"unlabeled_queries": len(texts), "augmented_examples": kept["examples"]}


def labelled(queries: Path, scores: Path, section, kept: Counter) -> Iterator[dict]:
    """An example for each query with a pseudo-positive; ``scores`` holds each query's
    retrieved pids in retrieval order with their logits, in the queries' order."""
    for query, scored in zip(iter_rows(queries), iter_rows(scores), strict=True):
        logits = dict(zip(scored["pids"], scored["scores"]))
        positives, negatives = pseudo_labels(scored["pids"], logits, section)
        if positives:
            kept.update(examples=1)
            yield {
                "qid": query["qid"],
                "query": query["text"],
                "positives": positives,
                "negatives": negatives[: section.max_negatives],
            }


def pseudo_labels(
    ranked: list[str], logits: dict[str, float], section
) -> tuple[list[str], list[str]]:
    """(positives, negatives) of one unlabeled query's retrieved passages, in retrieval order.

    ``probability`` (RocketQA): sigmoid(logit) above ``positive_above`` / below
    ``negative_below``. ``relative``: the retriever's top passage is the positive when the
    re-ranker also puts it first, and passages ``margin`` logits below it are negatives.
    """
    if section.mode == "probability":
        probs = {p: sigmoid(x) for p, x in logits.items()}
        positives = [p for p in ranked if probs.get(p, 0.0) > section.positive_above]
        negatives = [p for p in ranked if probs.get(p, 1.0) < section.negative_below]
        return positives, negatives
    scored = [p for p in ranked if p in logits]
    if not scored or max(scored, key=logits.get) != scored[0]:
        return [], []
    top = logits[scored[0]]
    return [scored[0]], [p for p in scored[1:] if logits[p] < top - section.margin]
