"""Stage evaluate: every retriever of the run on the eval split (zero-shot, BM25, each trained
dual encoder), and the final re-ranker over the final retriever's top-k: alone, and fused with
the retriever's ranks by reciprocal rank fusion. With ``fuse_train_cross`` train_cross's
re-ranker scores the same list too, and both re-rankers are fused with the retriever."""

from __future__ import annotations

import json
import shutil

from pipelines.config import PipelineConfig
from pipelines.inference.search import search_table
from pipelines.inference.steps import encode_corpus_table, encode_queries_table, score_lists
from pipelines.stages import DUAL_STAGES
from pipelines.stages.context import StageContext
from pipelines.stages.corpus_vectors import embeddings_source
from pipelines.stages.spec import External, Output, StageSpec
from retrieval.evaluator import RetrievalResult, evaluate_candidates
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.metrics import evaluate, write_trec_run
from retrieval.rerank import candidates_to_run, top_of_run
from retrieval.tables.labels import check_labels, read_qrels
from retrieval.tables.schemas import CANDIDATES
from retrieval.tables.store import read_table, table_exists, write_table

# Each one up to the stage's k is computed (MS MARCO's k of 1000 reaches recall@1000).
METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@50",
           "recall@100", "recall@200", "recall@500", "recall@1000")  # fmt: skip


def final_cross_encoder(config: PipelineConfig) -> Output | None:
    """The re-ranker of the run: joint training's when it ran, else train_cross's."""
    if config.enabled("train_joint"):
        return Output("train_joint", "cross_model")
    if config.enabled("train_cross"):
        return Output("train_cross", "model")
    return None


def spec(config: PipelineConfig, name: str) -> StageSpec:
    """Reads every dual encoder of the run (by stage name), the base model for the zero-shot
    row, and the final re-ranker."""
    reads: dict = {"tables": Output("prepare")}
    if config.stages.evaluate.zero_shot:
        reads["zero-shot"] = External(config.model)
    for stage in config.enabled_stages():
        if stage in DUAL_STAGES:
            reads[stage] = Output(stage, "model")
            source = embeddings_source(config, stage, name)
            if source is not None:
                reads[f"{stage}:embeddings"] = source  # encoded once, by mine or augment
    cross = final_cross_encoder(config)
    if cross is not None:
        reads["cross_model"] = cross
    if config.stages.evaluate.fuse_train_cross:  # config checks: train_joint's is the final one
        reads["train_cross_model"] = Output("train_cross", "model")
    return StageSpec(reads=reads, writes=("metrics.json",))


def run(ctx: StageContext) -> dict:
    section, split = ctx.section, ctx.config.data.eval_split
    metrics = tuple(m for m in METRICS if int(m.split("@")[1]) <= section.k)
    check_labels(ctx.tables, split)  # before any encoding
    ctx.out.mkdir(parents=True)
    models = {name: str(ctx.inputs[name]) for name in ctx.inputs if name == "zero-shot"}
    models.update({name: str(ctx.path(name)) for name in ctx.inputs if name in DUAL_STAGES})
    results: dict[str, dict] = {}
    if section.bm25:
        from retrieval.bm25 import evaluate_bm25

        results["bm25"] = evaluate_bm25(ctx.tables, split, metrics, section.k).metrics
    last = None
    for name, path in models.items():
        result = dense_result(ctx, name, path, metrics)
        write_trec_run(result.run, ctx.out / f"run-{name}.trec")
        results[name], last = result.metrics, (name, result)
    cross = ctx.inputs.get("cross_model")
    if cross is not None and last is not None and table_exists(ctx.tables / f"qrels-{split}"):
        results[last[0]].update(rerank_metrics(ctx, cross, last[1].run, split))
    (ctx.out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def dense_result(ctx: StageContext, name: str, model_dir: str, metrics) -> RetrievalResult:
    """One dual encoder on the eval split through the inference layer: the corpus vectors an
    earlier stage wrote (else encoded here), the queries encoded, the top k searched."""
    section, split, precision = ctx.section, ctx.config.data.eval_split, ctx.config.precision
    settings = section.inference()
    overrides = ctx.config.model_settings.overrides() if name == "zero-shot" else {}
    work, candidates = ctx.work / name, ctx.work / name / "candidates"
    if not table_exists(candidates):  # else a run killed after this retriever reuses its lists
        shutil.rmtree(work, ignore_errors=True)
        embeddings = ctx.inputs.get(f"{name}:embeddings")
        if embeddings is None:
            embeddings = work / "embeddings"
            encode_corpus_table(
                model_dir, ctx.tables / "corpus", embeddings, settings, precision,
                overrides=overrides, parts=ctx.parts(f"{name}-embeddings"),
            )  # fmt: skip
        vectors = work / "query-vectors"
        encode_queries_table(
            model_dir, ctx.tables / f"queries-{split}", vectors, settings, precision, overrides,
            parts=ctx.parts(f"{name}-query-vectors"),
        )  # fmt: skip
        search_table(vectors, embeddings, section.k, settings, candidates,
                     parts=ctx.parts(f"{name}-candidates"), **section.search_keys())  # fmt: skip
        # the corpus vectors are the size of the corpus: only the top k lists are kept
        for folder in (work / "embeddings", ctx.parts(f"{name}-embeddings")):
            shutil.rmtree(folder, ignore_errors=True)
    return evaluate_candidates(ctx.tables, split, read_table(candidates), section.k, metrics)


def rerank_metrics(ctx: StageContext, cross_dir, run: dict, split: str) -> dict[str, float]:
    """nDCG@10 after the re-ranker re-orders the retriever's top ``rerank_depth``, alone and
    fused with the retriever's order of the same list (RRF); both runs are written beside.
    With train_cross's re-ranker read too, its order of the list alone, and the RRF of both
    re-rankers' orders and the retriever's: two re-rankers that err on different pairs."""
    top = top_of_run(run, ctx.section.rerank_depth)
    lists = ctx.work / "rerank-lists"
    rows = ({"qid": q, "pids": list(top[q]), "scores": list(top[q].values())} for q in top)
    write_table(lists, rows, CANDIDATES)
    reranked = scored_lists(ctx, cross_dir, lists, split, "rerank-scores")
    runs = {"rerank": reranked, "rerank-rrf": reciprocal_rank_fusion([top, reranked])}
    second = ctx.inputs.get("train_cross_model")
    if second is not None:
        crossed = scored_lists(ctx, second, lists, split, "rerank-scores-train_cross")
        runs["rerank-train_cross"] = crossed
        runs["rerank-all-rrf"] = reciprocal_rank_fusion([top, reranked, crossed])
    qrels = read_qrels(ctx.tables / f"qrels-{split}")
    metrics = {}
    for name, ranked in runs.items():
        write_trec_run(ranked, ctx.out / f"run-{name}.trec")
        key = name.replace("-", "_")
        metrics[f"{key}_ndcg@10"] = evaluate(qrels, ranked, ("ndcg@10",))["ndcg@10"]
    return metrics


def scored_lists(ctx: StageContext, cross_dir, lists, split: str, name: str) -> dict:
    """A re-ranker's logits for every (query, passage) of ``lists``, as a run; its parts are
    kept under ``name`` so a killed stage resumes the scoring where it stopped."""
    scores = ctx.work / name
    score_lists(
        cross_dir, lists, ["pids"], ctx.tables / "corpus", ctx.tables / f"queries-{split}",
        scores, ctx.section.inference(), ctx.config.precision, parts=ctx.parts(name),
    )  # fmt: skip
    return candidates_to_run(read_table(scores))
