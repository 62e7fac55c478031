"""The loop's side of evaluation while training: after every ``every_steps`` steps and after
the last, rank 0 evaluates the model being trained (eval mode, no autograd, the training's
random streams untouched: isolation.py) while the other ranks wait, logs ``eval/<metric>``
to train_log.jsonl and TensorBoard, and keeps the best step (higher is better; a tie keeps
the earlier step).

What survives a kill: ``eval_best.json`` (the best step and value, written atomically after
each improvement) and, with ``select: best``, ``best/`` (that step's exported models and
``step.json``, swapped in as one folder; every rank joins the export, which gathers the
float32 master weights). Evaluation runs before the checkpoint of the same step, so a resumed
run has already evaluated every step its checkpoint holds and goes on from the record.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from retrieval.errors import ConfigError
from retrieval.tables.store import atomic_dir, replace_dir, write_json_atomic
from retrieval.training.evaluation.isolation import evaluating

logger = logging.getLogger(__name__)
RECORD = "eval_best.json"
BEST = "best"


def default_metric(kind: str) -> str:
    return "spearman" if kind == "pair" else "ndcg@10"


def build_evaluator(config, metric: str):
    """The evaluator of ``config.kind``; it reads its dev set here, once."""
    from retrieval.training.evaluation.reranker import RerankerEvaluator
    from retrieval.training.evaluation.retriever import RetrieverEvaluator
    from retrieval.training.evaluation.sts import StsEvaluator

    settings = config.evaluation
    if config.kind == "pair":
        return StsEvaluator(Path(settings.dev or config.data.pairs), settings)
    tables = Path(settings.dev or config.data.tables)
    if config.kind == "cross":
        return RerankerEvaluator(tables, settings, metric)
    if config.kind in ("dual", "joint"):  # joint: the retriever, the model it exports
        return RetrieverEvaluator(tables, settings, metric)
    raise ConfigError(f"kind {config.kind} has no evaluation while training")


def refuse_zero3(ds_config: dict) -> None:
    """Rank 0 runs the model alone; ZeRO-3's partitioned weights need every rank's forward."""
    if ds_config.get("zero_optimization", {}).get("stage", 0) == 3:
        raise ConfigError(
            "evaluation while training does not work with ZeRO stage 3 (rank 0 evaluates "
            "alone); use stage 0-2 or leave evaluation out"
        )


def load_best(out: Path, metric: str, select: str) -> dict | None:
    """The best-so-far record of a run being resumed (None: a fresh run or another metric).
    With ``select: best`` the record inside ``best/`` wins: it is swapped in with the weights
    it describes, before ``eval_best.json`` is written."""
    paths = [out / BEST / "step.json", out / RECORD] if select == "best" else [out / RECORD]
    for path in paths:
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("metric") == metric:
                return record
            logger.warning("%s: best of %s, not %s: starting over", path, record["metric"], metric)
    return None


class EvalDuringTraining:
    """``export_to(folder)`` exports the trained models under ``folder``; every rank calls it."""

    def __init__(self, config, module, model, rank: int, export_to: Callable[[Path], None]):
        settings = config.evaluation
        self.every, self.select = settings.every_steps, settings.select
        self.metric = settings.metric or default_metric(config.kind)
        self.out, self.module, self.model = Path(config.output_dir), module, model
        self.rank, self.export_to = rank, export_to
        self.evaluator = build_evaluator(config, self.metric) if rank == 0 else None
        self.best = load_best(self.out, self.metric, self.select) if rank == 0 else None

    def after_step(self, step: int, total: int, log) -> None:
        if step % self.every and step != total:
            return
        improved = False
        if self.rank == 0:
            improved = self.evaluate(step, log)
        improved = _broadcast(improved)
        if improved and self.select == "best":
            self.keep_best(step)
        if improved and self.rank == 0:
            write_json_atomic(self.out / RECORD, self.best)
        _barrier()

    def evaluate(self, step: int, log) -> bool:
        """Evaluate, log, and say whether ``step`` is the best so far."""
        started = time.perf_counter()
        with evaluating(self.module):
            metrics = self.evaluator(self.model)
        seconds = time.perf_counter() - started
        log.write({"step": step, **{f"eval/{k}": v for k, v in metrics.items()},
                   "eval/seconds": seconds})  # fmt: skip
        value = metrics[self.metric]
        logger.info("step %d: dev %s %.4f (%.1f s)", step, self.metric, value, seconds)
        if self.best is not None and not value > self.best["value"]:
            return False
        self.best = {"metric": self.metric, "step": step, "value": value}
        return True

    def keep_best(self, step: int) -> None:
        """Export this step's models into ``best/``, swapped in whole with its record."""
        tmp = self.out / f".{BEST}-step-{step}.tmp"
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        _barrier()
        self.export_to(tmp)
        if self.rank == 0:
            write_json_atomic(tmp / "step.json", self.best)
            replace_dir(tmp, self.out / BEST)

    def summary(self) -> dict:
        """What train_summary.json and the model card say of the evaluation (rank 0)."""
        best = self.best or {}
        return {"metric": self.metric, "select": self.select,
                "best_step": best.get("step"), "best_value": best.get("value")}  # fmt: skip


def promote_best(out: Path, names: list[str], cards: dict[str, str]) -> None:
    """``select: best``: the best step's models become the run's (``model`` last, as export
    writes it: its presence marks a finished run), with the final model cards."""
    for name in sorted(names, key=lambda n: n == "model"):
        with atomic_dir(out / name) as tmp:
            shutil.copytree(out / BEST / name, tmp, dirs_exist_ok=True)
            (tmp / "README.md").write_text(cards[name], encoding="utf-8")


def _broadcast(value: bool) -> bool:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
