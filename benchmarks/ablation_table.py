"""The ablation's table: each row's dev nDCG@10 at its stage for every seed, their mean, and the
change from the baseline at the same stage, read from the runs' evaluate/metrics.json (the
numbers the run report shows: pipelines/run_report.py).

The change is paired: the mean over seeds of (row - baseline) of the same seed, so the seeds'
own spread (which stage order, data order and initialisation all share) cancels.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from common import table

METRIC = "ndcg@10"
NOT_RUN = "not yet run"
HEADERS_BEFORE_SEEDS = ["row", "description", "stage"]
HEADERS_AFTER_SEEDS = ["mean", "delta vs baseline"]


@dataclass
class Line:
    """One line of the table: a row (or the baseline) at one stage, its value per seed (None:
    that run has not finished evaluate)."""

    row: str
    about: str
    stage: str
    values: dict[int, float | None] = field(default_factory=dict)

    def mean(self) -> float | None:
        found = [v for v in self.values.values() if v is not None]
        return statistics.fmean(found) if found else None

    def delta(self, baseline: Line) -> float | None:
        """Mean over the seeds both have of this line's value minus the baseline's."""
        pairs = [
            value - baseline.values[seed]
            for seed, value in self.values.items()
            if value is not None and baseline.values.get(seed) is not None
        ]
        return statistics.fmean(pairs) if pairs else None


def stage_metric(run_dir: Path, stage: str, metric: str = METRIC) -> float | None:
    """``stage``'s dev ``metric`` from the run's evaluate/metrics.json; None before evaluate
    has finished there (or when it did not evaluate that stage)."""
    path = run_dir / "evaluate" / "metrics.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get(stage, {}).get(metric)
    return None if value is None else float(value)


def markdown(baselines: list[Line], lines: list[Line], seeds: list[int]) -> str:
    """The Markdown table: the baseline at each stage, then the rows, each with its change
    from the baseline at its stage."""
    by_stage = {line.stage: line for line in baselines}
    headers = [*HEADERS_BEFORE_SEEDS, *(f"seed {s}" for s in seeds), *HEADERS_AFTER_SEEDS]
    cells = [_cells(line, seeds, "–") for line in baselines]
    for line in lines:
        change = line.delta(by_stage[line.stage]) if line.stage in by_stage else None
        cells.append(_cells(line, seeds, NOT_RUN if change is None else f"{change:+.3f}"))
    return table(headers, cells)


def _cells(line: Line, seeds: list[int], change: str) -> list[str]:
    values = [_number(line.values.get(seed)) for seed in seeds]
    return [line.row, line.about, line.stage, *values, _number(line.mean()), change]


def _number(value: float | None) -> str:
    return NOT_RUN if value is None else f"{value:.3f}"


def as_json(baselines: list[Line], lines: list[Line]) -> list[dict]:
    """The table's content for benchmarks/results/ablation-NAME.json."""
    by_stage = {line.stage: line for line in baselines}
    records = [_record(line, None) for line in baselines]
    for line in lines:
        base = by_stage.get(line.stage)
        records.append(_record(line, None if base is None else line.delta(base)))
    return records


def _record(line: Line, change: float | None) -> dict:
    return {
        "row": line.row,
        "description": line.about,
        "stage": line.stage,
        METRIC: {str(seed): value for seed, value in line.values.items()},
        "mean": line.mean(),
        "delta_vs_baseline": change,
    }
