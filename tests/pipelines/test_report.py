"""The run report: table cells, human time and memory, the Recall@k PNG, and report.md/.json
written atomically with no temporary files left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
from matplotlib.figure import Figure

from pipelines.report import format_table, plot_recall, recall_curves, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RECORDS = [
    {
        "stage": "train_dual_0",
        "model": "dual",
        "metrics": {
            "ndcg@10": 0.41234,
            "mrr@10": 0.35,
            "recall@1": 0.2,
            "recall@5": 0.45,
            "recall@10": 0.6,
            "recall@100": 0.9,
        },
        "wall_s": 433.0,
        "peak_rss_mb": 812.4,
        "status": "ran",
    },
    {
        "stage": "train_cross",
        "model": "cross",
        "metrics": {
            "rerank_ndcg@10": 0.5,
            "rerank_rrf_ndcg@10": 0.625,
            "recall@10": 0.7,
        },  # one point: not plotted
        "wall_s": 3720.0,
        "peak_rss_mb": 2560.0,
        "status": "cached",
    },
    {
        "stage": "denoise",
        "model": None,
        "metrics": {},
        "wall_s": 42.0,
        "peak_rss_mb": 100.0,
        "status": "skipped",
    },
]


def table_rows(table: str) -> dict[str, dict[str, str]]:
    """The table's body as {stage: {header: cell}}, cells stripped of padding."""
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()]
    header, _rule, *body = lines
    return {row[0]: dict(zip(header, row)) for row in body}


def test_table_has_one_row_per_record_with_formatted_cells():
    table = format_table(RECORDS)
    assert len(table.splitlines()) == 2 + len(RECORDS)
    rows = table_rows(table)
    assert list(rows) == ["train_dual_0", "train_cross", "denoise"]
    dual, cross, denoise = rows.values()
    assert dual["status"] == "ran"
    assert dual["nDCG@10"] == "0.412"
    assert dual["MRR@10"] == "0.350"
    assert (dual["R@10"], dual["R@100"]) == ("0.600", "0.900")
    assert dual["re-ranked nDCG@10"] == "–"
    assert cross["re-ranked nDCG@10"] == "0.500"
    assert cross["re-ranked + RRF nDCG@10"] == "0.625" and dual["re-ranked + RRF nDCG@10"] == "–"
    assert cross["R@100"] == "–"
    assert [denoise[h] for h in ("nDCG@10", "MRR@10", "R@10", "R@100")] == ["–"] * 4
    assert (dual["peak memory"], cross["peak memory"]) == ("812 MB", "2.5 GB")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (3.25, "3.2 s"),
        (42, "42 s"),
        (59.7, "1 min 00 s"),
        (433, "7 min 13 s"),
        (3720, "1 h 02 min"),
        (7199, "2 h 00 min"),
        (None, "–"),
    ],
)
def test_wall_time_is_human(seconds, expected):
    row = table_rows(format_table([{"stage": "s", "wall_s": seconds}]))["s"]
    assert row["wall time"] == expected
    assert row["status"] == row["peak memory"] == "–"


def test_table_columns_line_up():
    lines = format_table(RECORDS).splitlines()
    assert len({len(line) for line in lines}) == 1


def test_recall_curves_skip_stages_with_fewer_than_two_points():
    curves = recall_curves(RECORDS)
    assert curves == {
        "train_dual_0 (dual)": [(1, 0.2), (5, 0.45), (10, 0.6), (100, 0.9)],
    }


def test_plot_is_a_real_png(tmp_path):
    path = plot_recall(RECORDS, tmp_path / "recall.png")
    assert path == tmp_path / "recall.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _channels = matplotlib.image.imread(path).shape
    assert height > 200 and width > 200
    assert [p.name for p in tmp_path.iterdir()] == ["recall.png"]


def test_no_plot_without_two_recall_points(tmp_path):
    assert plot_recall(RECORDS[1:], tmp_path / "recall.png") is None
    assert list(tmp_path.iterdir()) == []


def test_failed_plot_leaves_no_file(tmp_path, monkeypatch):
    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_recall(RECORDS, tmp_path / "recall.png")
    assert list(tmp_path.iterdir()) == []


def test_write_report(tmp_path):
    run_dir = tmp_path / "msmarco-rocketqa"
    path = write_report(run_dir, RECORDS, {"preset": "rocketqa", "seed": 13})
    assert path == run_dir / "report.md"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "recall_at_k.png",
        "report.json",
        "report.md",
    ]
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ") and "msmarco-rocketqa" in text.splitlines()[0]
    assert format_table(RECORDS) in text
    assert "![Recall@k per stage](recall_at_k.png)" in text
    assert "- preset: rocketqa\n- seed: 13" in text
    assert (run_dir / "recall_at_k.png").read_bytes()[:8] == PNG_SIGNATURE
    saved = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert saved["records"] == RECORDS


def test_write_report_without_recall_or_config(tmp_path):
    (tmp_path / "recall_at_k.png").write_bytes(b"stale")
    write_report(tmp_path, RECORDS[2:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "![" not in text and "Configuration" not in text
    assert "| denoise" in text


MSMARCO_RECORDS = [
    {"stage": "bm25", "status": "baseline", "model": "bm25",
     "metrics": {"mrr@10": 0.187, "recall@50": 0.59, "recall@1000": 0.857}},
    {"stage": "train_dual_0", "status": "ran", "model": "dual",
     "metrics": {"ndcg@10": 0.4, "mrr@10": 0.334, "recall@10": 0.6, "recall@50": 0.821,
                 "recall@100": 0.88, "recall@1000": 0.964, "rerank_ndcg@10": 0.45}},
]  # fmt: skip
NQ_RECORDS = [
    {"stage": "zero-shot", "status": "baseline", "model": "dual",
     "metrics": {"answer_recall@1": 0.2, "answer_recall@5": 0.45, "answer_recall@20": 0.6,
                 "answer_recall@100": 0.75}},
    {"stage": "train_dual_0", "status": "ran", "model": "dual",
     "metrics": {"answer_recall@1": 0.4, "answer_recall@5": 0.68, "answer_recall@20": 0.8,
                 "answer_recall@100": 0.86}},
    {"stage": "mine", "status": "ran", "model": None, "metrics": {}},
]  # fmt: skip


def headers(table: str) -> list[str]:
    return [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]


def test_columns_are_the_metrics_the_run_has():
    """MS MARCO's MRR@10 / R@50 / R@1000; NQ's answer recall and no qrels columns at all."""
    assert headers(format_table(MSMARCO_RECORDS)) == [
        "stage", "status", "nDCG@10", "MRR@10", "R@10", "R@50", "R@100", "R@1000",
        "re-ranked nDCG@10", "wall time", "peak memory",
    ]  # fmt: skip
    rows = table_rows(format_table(MSMARCO_RECORDS))
    assert (rows["bm25"]["MRR@10"], rows["bm25"]["R@50"], rows["bm25"]["R@1000"]) == (
        "0.187", "0.590", "0.857",
    )  # fmt: skip
    assert rows["bm25"]["R@100"] == "–" and rows["train_dual_0"]["R@1000"] == "0.964"
    assert headers(format_table(NQ_RECORDS)) == [
        "stage", "status", "answer R@5", "answer R@20", "answer R@100", "wall time",
        "peak memory",
    ]  # fmt: skip
    rows = table_rows(format_table(NQ_RECORDS))
    assert [rows["train_dual_0"][f"answer R@{k}"] for k in (5, 20, 100)] == [
        "0.680", "0.800", "0.860",
    ]  # fmt: skip
    assert rows["mine"]["answer R@5"] == "–"


def test_recall_curves_are_answer_recall_where_there_are_no_qrels(tmp_path):
    assert recall_curves(NQ_RECORDS) == {
        "zero-shot (dual)": [(1, 0.2), (5, 0.45), (20, 0.6), (100, 0.75)],
        "train_dual_0 (dual)": [(1, 0.4), (5, 0.68), (20, 0.8), (100, 0.86)],
    }
    both = {"stage": "s", "metrics": {**NQ_RECORDS[0]["metrics"], "recall@10": 0.5,
                                      "recall@1000": 0.9}}  # fmt: skip
    assert recall_curves([both]) == {"s": [(10, 0.5), (1000, 0.9)]}  # qrels first
    assert recall_curves(MSMARCO_RECORDS)["train_dual_0 (dual)"][-1] == (1000, 0.964)
    path = plot_recall(NQ_RECORDS, tmp_path / "recall.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
