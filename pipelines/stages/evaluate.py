"""Stage evaluate: every retriever of the run on the eval split (zero-shot, BM25, each trained
dual encoder), and the final re-ranker over the final retriever's top-k."""

from __future__ import annotations

import json

import numpy as np

from pipelines.stages import DUAL_STAGES
from pipelines.stages.context import StageContext
from retrieval.evaluator import evaluate_retriever, read_qrels
from retrieval.metrics import evaluate, write_trec_run
from retrieval.models import CrossEncoder, DualEncoder
from retrieval.rerank import rerank
from retrieval.retriever import to_candidates
from retrieval.tables.store import table_exists

METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@50",
           "recall@100")  # fmt: skip


def final_cross_encoder(ctx: StageContext):
    if ctx.config.enabled("train_joint"):
        return ctx.stage_dir("train_joint") / "cross_model"
    if ctx.config.enabled("train_cross"):
        return ctx.stage_dir("train_cross") / "model"
    return None


def run(ctx: StageContext) -> dict:
    section, split = ctx.section, ctx.config.data.eval_split
    metrics = tuple(m for m in METRICS if int(m.split("@")[1]) <= section.k)
    ctx.out.mkdir(parents=True)
    models = {"zero-shot": ctx.config.model} if section.zero_shot else {}
    for stage in ctx.config.enabled_stages():
        if stage in DUAL_STAGES:
            models[stage] = str(ctx.stage_dir(stage) / "model")
    results: dict[str, dict] = {}
    if section.bm25:
        from retrieval.bm25 import evaluate_bm25

        results["bm25"] = evaluate_bm25(ctx.tables, split, metrics, section.k).metrics
    last = None
    for name, path in models.items():
        model = DualEncoder.from_pretrained(
            path, **(ctx.config.model_settings if name == "zero-shot" else {})
        )
        result = evaluate_retriever(
            model, ctx.tables, split, metrics, k=section.k, batch_size=section.batch_size,
            precision=ctx.config.precision,
        )  # fmt: skip
        write_trec_run(result.run, ctx.out / f"run-{name}.trec")
        results[name], last = result.metrics, (name, result)
    cross = final_cross_encoder(ctx)
    if cross is not None and last is not None and table_exists(ctx.tables / f"qrels-{split}"):
        results[last[0]]["rerank_ndcg@10"] = rerank_ndcg(ctx, cross, last[1].run, split)
    (ctx.out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def rerank_ndcg(ctx: StageContext, cross_dir, run: dict, split: str) -> float:
    """nDCG@10 after the re-ranker re-orders the retriever's top ``rerank_depth``."""
    qids = list(run)
    ranked = [sorted(run[q], key=run[q].get, reverse=True) for q in qids]
    depth = ctx.section.rerank_depth
    scores = np.array(
        [
            [run[q][p] for p in r[:depth]] + [0.0] * (depth - len(r[:depth]))
            for q, r in zip(qids, ranked)
        ],
        dtype=np.float32,
    )
    pids = [r[:depth] + [""] * (depth - len(r[:depth])) for r in ranked]
    candidates = to_candidates(qids, scores, pids)
    model = CrossEncoder.from_pretrained(cross_dir)
    reranked = rerank(
        model,
        candidates,
        ctx.tables / "corpus",
        ctx.tables / f"queries-{split}",
        depth,
        batch_size=ctx.section.batch_size,
        precision=ctx.config.precision,
    )
    rerun = {
        q: dict(zip(p, s))
        for q, p, s in zip(*(reranked[c].to_pylist() for c in ("qid", "pids", "scores")))
    }
    qrels = read_qrels(ctx.tables / f"qrels-{split}")
    return evaluate(qrels, rerun, ("ndcg@10",))["ndcg@10"]
