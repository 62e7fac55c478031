"""Stage augment (RocketQA): unlabeled queries are retrieved by the current dual encoder and
pseudo-labelled by the cross-encoder: confident positives and negatives become new examples
(``stages.augment.mode``: RocketQA's probability thresholds, or ``relative``; see pseudo_labels).

Queries come from a file (one a line) or are derived from the corpus (passage titles).
"""

from __future__ import annotations

import numpy as np

from pipelines.config import PipelineConfig
from pipelines.stages import last_dual_before
from pipelines.stages.ce_scores import ce_logits, sigmoid
from pipelines.stages.context import StageContext
from pipelines.stages.corpus_vectors import embeddings_source, encode_stage_corpus
from pipelines.stages.spec import External, Output, StageSpec
from retrieval.errors import ConfigError
from retrieval.indexing import index_from_table
from retrieval.models import DualEncoder
from retrieval.retriever import search_queries
from retrieval.tables.schemas import EXAMPLES, QUERIES
from retrieval.tables.store import read_table, write_table


def unlabeled_queries(ctx: StageContext) -> list[str]:
    section = ctx.section
    texts: list[str] = []
    if "queries_file" in ctx.inputs:
        lines = ctx.path("queries_file").read_text(encoding="utf-8").splitlines()
        texts += [line.strip() for line in lines if line.strip()]
    if section.from_corpus:
        titles = read_table(ctx.path("corpus"), columns=["title"])["title"].to_pylist()
        titles = [t for t in titles if t and len(t.split()) >= 4]
        rng = np.random.default_rng(ctx.config.seed)
        picked = rng.choice(len(titles), size=min(section.from_corpus, len(titles)), replace=False)
        texts += [titles[i] for i in sorted(picked)]
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
    section = ctx.section
    texts = unlabeled_queries(ctx)
    qids = [f"aug-{i}" for i in range(len(texts))]
    ctx.out.mkdir(parents=True)
    write_table(
        ctx.out / "queries-augmented", [{"qid": q, "text": t} for q, t in zip(qids, texts)], QUERIES
    )
    model_dir = ctx.path("model")
    model = DualEncoder.from_pretrained(model_dir)
    precision = ctx.config.precision
    embeddings = ctx.inputs.get("embeddings") or ctx.out / "embeddings"
    if "embeddings" not in ctx.inputs:
        encode_stage_corpus(ctx, ctx.path("corpus"), model_dir, model, embeddings)
    index = index_from_table(embeddings)
    _, pids = search_queries(model, qids, texts, index, section.depth, precision=precision)
    logits = ce_logits(
        ctx.path("cross_model"),
        {q: [p for p in row if p] for q, row in zip(qids, pids)},
        ctx.path("corpus"),
        ctx.out / "queries-augmented",
        section.batch_size,
        precision,
    )
    rows = []
    for qid, text, ranked in zip(qids, texts, pids):
        ranked = [p for p in ranked if p]
        positives, negatives = pseudo_labels(ranked, logits.get(qid, {}), section)
        if positives:
            rows.append(
                {
                    "qid": qid,
                    "query": text,
                    "positives": positives,
                    "negatives": negatives[: section.max_negatives],
                }
            )
    write_table(ctx.out / "examples-augmented", rows, EXAMPLES)
    return {"unlabeled_queries": len(texts), "augmented_examples": len(rows)}


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
