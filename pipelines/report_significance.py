"""The run report's answer to "is the re-ranking gain noise?": each re-ranked order that evaluate
wrote, against the final retriever's order of the same queries, query by query.

Holds only the reading of evaluate's run files and the Markdown table; the statistics live in
retrieval/metrics/significance.py.
"""

from __future__ import annotations

from pathlib import Path

from retrieval.metrics import per_query, read_trec_run
from retrieval.metrics.significance import PairedComparison, compare_per_query
from retrieval.tables.labels import read_qrels
from retrieval.tables.store import table_exists

METRIC = "ndcg@10"
# evaluate's run files (pipelines/stages/evaluate.py rerank_metrics) and the report's names
RERANKED = (
    ("re-ranked", "rerank"),
    ("re-ranked + RRF", "rerank-rrf"),
    ("train_cross re-ranked", "rerank-train_cross"),
    ("both re-rankers + RRF", "rerank-all-rrf"),
)


def reranking_comparisons(
    run_dir: Path, eval_metrics: dict[str, dict], split: str
) -> tuple[str, list[tuple[str, PairedComparison]]] | None:
    """The re-ranked retriever's name and each re-ranked run against it; None when the run has
    no re-ranking, no run files or no qrels (an answers-only split)."""
    retriever = next((k for k, m in eval_metrics.items() if f"rerank_{METRIC}" in m), None)
    folder, qrels_dir = run_dir / "evaluate", run_dir / "prepare" / f"qrels-{split}"
    base_file = folder / f"run-{retriever}.trec"
    if retriever is None or not base_file.is_file() or not table_exists(qrels_dir):
        return None
    qrels = read_qrels(qrels_dir)
    base = per_query(qrels, read_trec_run(base_file), (METRIC,))
    rows = [
        (label, compare_per_query(base, per_query(qrels, read_trec_run(path), (METRIC,)), METRIC))
        for label, name in RERANKED
        if (path := folder / f"run-{name}.trec").is_file()
    ]
    return (retriever, rows) if rows else None


def significance_section(run_dir: Path, eval_metrics: dict[str, dict], split: str) -> str | None:
    """A Markdown section: is each re-ranked order better than the retriever's beyond noise?"""
    found = reranking_comparisons(run_dir, eval_metrics, split)
    if found is None:
        return None
    retriever, rows = found
    queries = rows[0][1].queries
    lines = [
        "## Re-ranking against the retriever, query by query",
        "",
        f"{METRIC} on {split} ({queries} queries) against {retriever}'s order of the same lists: "
        "the difference, its 95% bootstrap interval and a paired randomization test's p-value "
        "(`rqa evaluate --run ... --compare ...` gives the same for any two run files).",
        "",
        f"| order | {retriever} | re-ranked | difference | 95% CI | p | better / worse |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {label} | {r.cells()} |" for label, r in rows]
    return "\n".join(lines)
