"""The run report of a pipeline run: a Markdown table of each stage's metrics, time and memory,
a Recall@k plot, and ``report.md`` / ``report.json`` written atomically into the run folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from retrieval.tables.store import replace_atomically

Record = Mapping[str, Any]

MISSING = "–"
PLOT_NAME = "recall_at_k.png"
# Every column a report can have; a table shows those some row has a number for, so MS MARCO
# (k 1000) gets R@50 and R@1000, NQ (answers, no qrels) answer recall and no qrels columns.
METRIC_COLUMNS = (
    ("nDCG@10", "ndcg@10"),
    ("MRR@10", "mrr@10"),
    ("R@10", "recall@10"),
    ("R@50", "recall@50"),
    ("R@100", "recall@100"),
    ("R@1000", "recall@1000"),
    ("answer R@5", "answer_recall@5"),
    ("answer R@20", "answer_recall@20"),
    ("answer R@100", "answer_recall@100"),
    ("re-ranked nDCG@10", "rerank_ndcg@10"),
    ("re-ranked + RRF nDCG@10", "rerank_rrf_ndcg@10"),
    ("train_cross re-ranked nDCG@10", "rerank_train_cross_ndcg@10"),
    ("both re-rankers + RRF nDCG@10", "rerank_all_rrf_ndcg@10"),
)
RECALL_KEY = re.compile(r"(answer_)?recall@(\d+)")


def _number(value: object) -> float | None:
    """``value`` as a float, or None when it is absent, not a number, or NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _metric(record: Record, key: str) -> str:
    value = _number((record.get("metrics") or {}).get(key))
    return MISSING if value is None else f"{value:.3f}"


def _duration(seconds: object) -> str:
    """``42 s``, ``7 min 13 s`` or ``1 h 02 min``; tenths of a second below 10 s."""
    value = _number(seconds)
    if value is None:
        return MISSING
    if value < 9.95:
        return f"{value:.1f} s"
    if value < 59.5:
        return f"{round(value)} s"
    if value < 3599.5:
        minutes, secs = divmod(round(value), 60)
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(round(value / 60), 60)
    return f"{hours} h {minutes:02d} min"


def _memory(megabytes: object) -> str:
    """``812 MB`` below one GiB, ``1.5 GB`` above."""
    value = _number(megabytes)
    if value is None:
        return MISSING
    return f"{value:.0f} MB" if value < 1023.5 else f"{value / 1024:.1f} GB"


def _cell(value: object) -> str:
    return MISSING if value is None else str(value).replace("|", "\\|")


def metric_columns(records: Sequence[Record]) -> list[tuple[str, str]]:
    """The (title, key) of each metric column some record has a number for, in table order."""
    present = {
        key
        for r in records
        for key, value in (r.get("metrics") or {}).items()
        if _number(value) is not None
    }
    return [(title, key) for title, key in METRIC_COLUMNS if key in present]


def _row(record: Record, columns: Sequence[tuple[str, str]]) -> list[str]:
    metrics = [_metric(record, key) for _, key in columns]
    stage, status = _cell(record.get("stage")), _cell(record.get("status"))
    return [
        stage,
        status,
        *metrics,
        _duration(record.get("wall_s")),
        _memory(record.get("peak_rss_mb")),
    ]


def format_table(records: Sequence[Record]) -> str:
    """A Markdown table, one row per record, padded so it also reads well in a terminal; one
    column per metric that some record has (``metric_columns``)."""
    columns = metric_columns(records)
    headers = ["stage", "status", *(title for title, _ in columns), "wall time", "peak memory"]
    rows = [headers, *(_row(r, columns) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    rule = [("-" * (w - 1) + ":") if i >= 2 else "-" * w for i, w in enumerate(widths)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "| " + " | ".join(padded) + " |"

    return "\n".join([line(rows[0]), line(rule), *(line(row) for row in rows[1:])])


def recall_curves(records: Sequence[Record]) -> dict[str, list[tuple[int, float]]]:
    """Each stage's (k, Recall@k) points sorted by k, for stages with at least two of them;
    answer recall@k (NQ) for a stage with no qrels Recall@k."""
    curves = {}
    for record in records:
        points: dict[str, list[tuple[int, float]]] = {"": [], "answer_": []}
        for key, value in (record.get("metrics") or {}).items():
            match, number = RECALL_KEY.fullmatch(str(key)), _number(value)
            if match and number is not None and int(match[2]) > 0:
                points[match[1] or ""].append((int(match[2]), number))
        best = points[""] if len(points[""]) >= 2 else points["answer_"]
        if len(best) >= 2:
            curves[_label(record)] = sorted(best)
    return curves


def _label(record: Record) -> str:
    stage, model = str(record.get("stage")), record.get("model")
    return f"{stage} ({model})" if model else stage


def _recall_figure(
    curves: Mapping[str, Sequence[tuple[int, float]]], ylabel: str = "Recall@k"
) -> Figure:
    fig = Figure(figsize=(7, 4.5), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, points in curves.items():
        ks, values = zip(*points)
        ax.plot(ks, values, marker="o", label=label)
    ks = sorted({k for points in curves.values() for k, _ in points})
    ax.set_xscale("log")
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(bottom=0)
    ax.set(xlabel="k (retrieved passages)", ylabel=ylabel, title="Recall@k per stage")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_recall(records: Sequence[Record], path: str | os.PathLike) -> Path | None:
    """Write the Recall@k PNG to ``path``; None, and no file, when no stage has two points."""
    curves = recall_curves(records)
    if not curves:
        return None
    qrels = any(str(k).startswith("recall@") for r in records for k in r.get("metrics") or {})
    fig = _recall_figure(curves, "Recall@k" if qrels else "answer recall@k (answer in the top k)")
    return replace_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


def _markdown(
    name: str,
    table: str,
    plot: Path | None,
    config: Mapping | None,
    losses: Sequence[Path],
    sections: Sequence[str] = (),
) -> str:
    parts = [f"# Run report: {name}", table]
    if plot is not None:
        parts.append(f"![Recall@k per stage]({plot.name})")
    parts += sections
    if losses:
        images = "\n".join(f"![{p.stem}]({p.name})" for p in losses)
        parts.append(f"## Training loss\n\n{images}")
    if config:
        lines = "\n".join(f"- {key}: {value}" for key, value in config.items())
        parts.append(f"## Configuration\n\n{lines}")
    return "\n\n".join(parts) + "\n"


def write_report(
    run_dir: str | os.PathLike,
    records: Sequence[Record],
    config_summary: dict | None = None,
    loss_plots: Sequence[Path] = (),
    sections: Sequence[str] = (),
) -> Path:
    """Write the plot, ``report.json`` and, last, ``report.md`` into ``run_dir``; return the last.
    ``sections``: Markdown sections placed after the table and plot (each with its heading).

    A stale plot from an earlier report is removed when no stage has Recall@k values now.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    plot = plot_recall(records, run_dir / PLOT_NAME)
    if plot is None:
        (run_dir / PLOT_NAME).unlink(missing_ok=True)
    payload = {"run": run_dir.name, "records": list(records), "config": config_summary}
    text = json.dumps(payload, indent=2, default=str) + "\n"
    replace_atomically(run_dir / "report.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    markdown = _markdown(
        run_dir.name, format_table(records), plot, config_summary, loss_plots, sections
    )
    return replace_atomically(
        run_dir / "report.md", lambda tmp: tmp.write_text(markdown, encoding="utf-8")
    )
