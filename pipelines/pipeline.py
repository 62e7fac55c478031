"""Run the pipeline on Ray and write the run report: the glue between the runner (which stages
run) and the report (what they measured). Prints the same table the report holds."""

from __future__ import annotations

import json
import logging

from pipelines.config import PipelineConfig
from pipelines.ray_env import ensure_ray
from pipelines.report import format_table, write_report
from pipelines.runner import check_models, plan_run, run_pipeline

logger = logging.getLogger(__name__)


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


def run_and_report(
    config: PipelineConfig, only: str | None = None, start: str | None = None, force=()
) -> list[dict]:
    check_models(config, plan_run(config, only, start, force))  # before Ray starts
    ensure_ray(config.ray.address, config.ray.num_cpus)
    records = run_pipeline(config, only=only, start=start, force=force)
    run_dir = config.resolved_run_dir()
    metrics_file = run_dir / "evaluate" / "metrics.json"
    eval_metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    rows = report_records(records, eval_metrics)
    summary = {
        "name": config.name,
        "preset": config.preset,
        "model": config.model,
        "stages": ", ".join(config.enabled_stages()),
    }
    path = write_report(run_dir, rows, summary)
    print(format_table(rows))
    print(f"report: {path}")
    return rows
