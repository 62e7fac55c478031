"""Stage mine: the current dual encoder retrieves top-k passages for every training query;
the top non-positive ones become hard-negative candidates (RocketQA's mined negatives)."""

from __future__ import annotations

from functools import partial

from pipelines.config import PipelineConfig
from pipelines.stages import last_dual_before
from pipelines.stages.context import StageContext
from pipelines.stages.corpus_vectors import encode_stage_corpus
from pipelines.stages.spec import Output, StageSpec
from retrieval.answers_match import drop_answer_passages
from retrieval.evaluator import body_texts, read_answers
from retrieval.indexing import index_from_table
from retrieval.models import DualEncoder
from retrieval.retriever import read_queries, search_queries, to_candidates
from retrieval.tables.schemas import CANDIDATES, EXAMPLES
from retrieval.tables.store import table_exists, write_table
from retrieval.training.examples import load_examples


def mined_examples(tables, split: str, candidates, keep: int) -> list[dict]:
    """Positives from the examples table or the qrels; negatives: the top ``keep`` retrieved
    passages that are not positives (replacing any negatives the dataset came with) and, when
    the split has answers (NQ), hold none of them in their body: as in DPR, such a passage is
    likely a false negative (retrieval/answers_match.py)."""
    ranked = dict(zip(candidates["qid"].to_pylist(), candidates["pids"].to_pylist()))
    rows = load_examples(tables, split, None).to_pylist()
    for row in rows:
        positives = set(row["positives"])
        row["negatives"] = [p for p in ranked.get(row["qid"], []) if p not in positives]
    if table_exists(tables / f"answers-{split}"):
        answers = read_answers(tables / f"answers-{split}")
        drop_answer_passages(rows, answers, partial(body_texts, tables / "corpus"), keep)
    for row in rows:
        row["negatives"] = row["negatives"][:keep]
    return rows


def spec(config: PipelineConfig, name: str) -> StageSpec:
    split = config.data.train_split
    return StageSpec(
        reads={
            "tables": Output("prepare"),
            "model": Output(last_dual_before(config, name), "model"),
        },
        writes=("embeddings", f"candidates-{split}", f"examples-{split}"),
    )


def run(ctx: StageContext) -> dict:
    section, split = ctx.section, ctx.config.data.train_split
    model_dir = ctx.path("model")
    model = DualEncoder.from_pretrained(model_dir)
    ctx.out.mkdir(parents=True)
    precision = ctx.config.precision
    embeddings = ctx.out / "embeddings"
    encode_stage_corpus(ctx, ctx.tables / "corpus", model_dir, model, embeddings)
    index = index_from_table(embeddings, factory=section.factory)
    qids, texts = read_queries(ctx.tables / f"queries-{split}")
    scores, pids = search_queries(model, qids, texts, index, section.depth, precision=precision)
    candidates = to_candidates(qids, scores, pids)
    write_table(ctx.out / f"candidates-{split}", candidates, CANDIDATES)
    rows = mined_examples(ctx.tables, split, candidates, section.negatives)
    write_table(ctx.out / f"examples-{split}", rows, EXAMPLES)
    with_negatives = sum(1 for r in rows if r["negatives"])
    return {"queries": len(qids), "examples_with_negatives": with_negatives}
