"""Run the pipeline on Ray and write the run report: the glue between the runner (which stages
run) and the report (what they measured). Prints the same table the report holds.

`rqa report RUN_DIR` rebuilds the same report from a finished run's folders alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipelines.config import STAGE_ORDER, PipelineConfig
from pipelines.inference.resources import check_cluster
from pipelines.loss_curves import plot_loss_curves
from pipelines.ray_env import ensure_ray
from pipelines.report import format_table, write_report
from pipelines.report_significance import significance_section
from pipelines.run_lock import RunLock
from pipelines.runner import check_models, plan_run, read_stage_manifest, run_pipeline
from pipelines.shared_storage import check_shared_run_dir
from retrieval.training.model_card import set_evaluation

logger = logging.getLogger(__name__)
RERANKERS = (("train_joint", "cross_model"), ("train_cross", "model"))


def report_records(records: list[dict], eval_metrics: dict[str, dict]) -> list[dict]:
    """One row per stage (time, memory, status) with its model's eval metrics, plus baselines."""
    rows = [
        {"stage": name, "status": "baseline", "model": "bm25" if name == "bm25" else "dual",
         "metrics": eval_metrics[name]}
        for name in ("zero-shot", "bm25") if name in eval_metrics
    ]  # fmt: skip
    for record in records:
        rows.append(
            {
                "stage": record["stage"],
                "status": record["status"],
                "model": "dual" if record["stage"] in eval_metrics else None,
                "metrics": eval_metrics.get(record["stage"], {}),
                "wall_s": record.get("wall_s"),
                "peak_rss_mb": record.get("peak_rss_mb"),
            }
        )
    return rows


def fill_model_cards(run_dir: Path, eval_metrics: dict[str, dict], split: str) -> None:
    """Each trained model's card gets this run's metrics for it (the re-ranker: its re-ranking
    of the final retriever's list)."""
    for stage, metrics in eval_metrics.items():
        card = run_dir / stage / "model" / "README.md"
        plain = {k: v for k, v in metrics.items() if not k.startswith("rerank")}
        if card.is_file() and plain:
            set_evaluation(card, metrics_text(run_dir, stage, split, plain))
        reranked = {k: v for k, v in metrics.items() if k.startswith("rerank")}
        for reranker, folder in RERANKERS if reranked else ():
            card = run_dir / reranker / folder / "README.md"
            if card.is_file():
                note = f"re-ranking the top of {stage}'s retrieval"
                set_evaluation(card, metrics_text(run_dir, reranker, split, reranked, note))
                break


def metrics_text(run_dir: Path, stage: str, split: str, metrics: dict, note: str = "") -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    about = f"; {note}" if note else ""
    return (
        f"Pipeline run `{run_dir.name}`, stage `{stage}`, split `{split}`{about}:\n\n"
        f"| metric | value |\n|---|---|\n{rows}"
    )


def build_report(run_dir: Path, records: list[dict], summary: dict, split: str) -> Path:
    """Report table + plots, and the model cards' evaluation sections, from a run folder."""
    metrics_file = run_dir / "evaluate" / "metrics.json"
    eval_metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    rows = report_records(records, eval_metrics)
    losses = plot_loss_curves(run_dir, [r["stage"] for r in records])
    fill_model_cards(run_dir, eval_metrics, split)
    significance = significance_section(run_dir, eval_metrics, split)
    sections = [significance] if significance else []
    path = write_report(run_dir, rows, summary, losses, sections)
    print(format_table(rows))
    if significance:
        print(significance)
    print(f"report: {path}")
    return path


def run_and_report(
    config: PipelineConfig, only: str | None = None, start: str | None = None, force=()
) -> Path:
    plan = plan_run(config, only, start, force)
    check_models(config, plan)  # before Ray starts
    RunLock(config.resolved_run_dir()).acquire().release()  # busy: one line, before Ray starts
    ensure_ray(config.ray.address, config.ray.num_cpus)
    import ray

    if config.ray.address:  # a cluster: every node must see the run directory
        check_shared_run_dir(config.resolved_run_dir())

    check_cluster(config, [p.stage for p in plan if p.runs], ray.cluster_resources())
    records = run_pipeline(config, only=only, start=start, force=force)
    summary = {
        "name": config.name,
        "preset": config.preset,
        "model": config.model,
        "stages": ", ".join(config.enabled_stages()),
        "eval_split": config.data.eval_split,
    }
    return build_report(config.resolved_run_dir(), records, summary, config.data.eval_split)


def report_from_folder(run_dir: Path) -> Path:
    """Rebuild the report of a run from its stage folders (what `rqa report` does)."""
    records = []
    for stage in STAGE_ORDER:
        manifest = read_stage_manifest(run_dir / stage)
        if manifest is not None:
            records.append({**manifest, "status": "done"})
    if not records:
        from retrieval.errors import MissingInputError

        raise MissingInputError(f"{run_dir}: no finished stage here (no STAGE/_manifest.json)")
    previous = run_dir / "report.json"
    summary = json.loads(previous.read_text()).get("config") if previous.is_file() else None
    summary = summary or {"name": run_dir.name}
    return build_report(run_dir, records, summary, summary.get("eval_split", "dev"))
