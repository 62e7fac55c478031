"""One loss-curve PNG per training stage of a run, from the stage's ``train_log.jsonl`` (the
same records its TensorBoard events hold), for the run report."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from retrieval.tables.store import replace_atomically


def read_losses(log: Path) -> list[tuple[int, float]]:
    """(step, loss) pairs in step order; a resumed run's repeated steps keep their last value."""
    by_step = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:  # evaluation records carry metrics, not a loss
            by_step[int(record["step"])] = float(record["loss"])
    return sorted(by_step.items())


def plot_loss_curve(stage: str, points: list[tuple[int, float]], path: Path) -> Path:
    fig = Figure(figsize=(6, 3.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps, losses = zip(*points)
    ax.plot(steps, losses, marker="." if len(points) < 50 else None)
    ax.set(xlabel="step", ylabel="training loss", title=f"{stage}: training loss")
    ax.grid(True, alpha=0.3)
    return replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_loss_curves(run_dir: Path, stages: list[str]) -> list[Path]:
    """``loss-STAGE.png`` in ``run_dir`` for each stage that logged at least two steps."""
    plots = []
    for stage in stages:
        log = run_dir / stage / "train_log.jsonl"
        points = read_losses(log) if log.is_file() else []
        if len(points) >= 2:
            plots.append(plot_loss_curve(stage, points, run_dir / f"loss-{stage}.png"))
    return plots
