"""The three inference steps of the pipeline, each a table in and a table out through a pool of
workers that write the output's parts themselves (pool.run_to_parts): the driver counts the
parts' rows with a progress bar and writes the manifest, and never holds input or output data.

``parts``: where the parts go until the table is assembled; a stage passes a folder of its work
folder, which a crash keeps, so a rerun computes only the parts it is missing. Without one the
parts go to a hidden sibling of ``out`` (kept after a crash too) and are removed once ``out`` is
written. The parts folder is cleared when what the parts are computed from changes.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
from tqdm.auto import tqdm

from pipelines.inference.pool import run_to_parts, table_slices
from pipelines.inference.settings import InferenceSettings
from pipelines.inference.workers import CorpusEncoder, PairScorer, QueryEncoder
from retrieval.models import DualEncoder
from retrieval.tables.parts import assemble, finished_parts, folder_stamp, open_parts
from retrieval.tables.schemas import CANDIDATES, embeddings_schema
from retrieval.tables.store import read_manifest

logger = logging.getLogger(__name__)

ROWS_PER_TASK = 2048  # texts a worker encodes per call
LISTS_PER_TASK = 1024  # queries' lists a worker scores per call


def _device(settings: InferenceSettings) -> str:
    return "cuda" if settings.gpus_per_actor > 0 else "cpu"


def _input_stamp(table_dir: Path) -> list:
    """What the parts of a table computed from ``table_dir`` depend on: its shards' digests."""
    return [entry["sha256"] for entry in read_manifest(table_dir)["files"]]


def run_step(
    worker: type, args: tuple, source: Path, rows_per_task: int, out: Path,
    settings: InferenceSettings, schema: pa.Schema, plan: dict, parts: Path | None,
    desc: str, meta: dict | None = None,
) -> dict:  # fmt: skip
    """``worker`` over ``source``'s slices (``rows_per_task`` rows each) into parts, then the
    table at ``out``; ``plan``: what the parts depend on besides ``source``."""
    own = parts is None
    parts = Path(parts) if parts is not None else default_parts(out)
    plan = {**plan, "input": _input_stamp(source), "rows_per_task": rows_per_task}
    folder = open_parts(parts, plan)
    items = table_slices(source, rows_per_task)
    total = read_manifest(source)["rows"]
    _count(run_to_parts(worker, args, items, settings, folder), total, desc, out)
    meta = {**(meta or {}), **_precision_meta(folder, out)}
    manifest = assemble(folder, out, len(items), schema, meta)
    if own:
        shutil.rmtree(folder, ignore_errors=True)
    return manifest


def _precision_meta(folder: Path, out: Path) -> dict:
    """``{"precision": ...}``: what the workers ran in, as each part recorded it. ``auto``
    resolves where a worker runs, so a table resumed on another kind of machine (a CPU with or
    without bf16, a GPU) can hold parts of both: it is written as ``bf16+fp32``, with a warning,
    rather than passed off as one precision."""
    used = Counter(
        entry.get("worker", {}).get("precision") for entry in finished_parts(folder).values()
    )
    used.pop(None, None)
    if len(used) > 1:
        counts = ", ".join(f"{n} parts in {p}" for p, n in sorted(used.items()))
        logger.warning(
            "%s mixes precisions (%s): its parts were computed on different kinds of machine "
            "under precision: auto; rerun the stage with --force, or set precision to fp32 or "
            "bf16, for one precision", out, counts,
        )  # fmt: skip
    return {"precision": "+".join(sorted(used))} if used else {}


def default_parts(out: Path) -> Path:
    """The parts folder of a step given none: a hidden sibling of its output."""
    return Path(out).parent / f".{Path(out).name}.parts"


def _count(entries: Iterable[dict], total: int, desc: str, where: Path) -> None:
    seen = 0
    with tqdm(total=total, desc=desc) as bar:
        for entry in entries:
            seen += entry["rows"]
            bar.update(entry["rows"])
    if seen != total:
        raise RuntimeError(f"{where}: got {seen} of {total} rows back from the workers")


def _model_plan(model_dir, precision: str, overrides: dict, batch_size: int) -> dict:
    return {"model": str(model_dir), "model_files": folder_stamp(model_dir),
            "precision": precision, "overrides": overrides, "batch_size": batch_size}  # fmt: skip


def encode_corpus_table(
    model_dir: str | os.PathLike, corpus: Path, out: Path, settings: InferenceSettings,
    precision: str = "fp32", dtype: str = "float32", overrides: dict | None = None,
    parts: Path | None = None,
) -> dict:  # fmt: skip
    """Embeddings table (pid, vector) of the corpus table; returns its manifest.
    ``overrides``: model settings that replace the saved ones (the zero-shot model's)."""
    overrides = dict(overrides or {})
    model = DualEncoder.from_pretrained(str(model_dir), **overrides)  # dim and settings only
    args = (str(model_dir), settings.batch_size, precision, dtype, overrides)
    meta = {"dim": model.dim, "dtype": dtype, "normalized": model.settings.normalize}
    plan = {"step": "encode_corpus", "dtype": dtype, "device": _device(settings),
            **_model_plan(model_dir, precision, overrides, settings.batch_size)}  # fmt: skip
    schema = embeddings_schema(model.dim, dtype)
    return run_step(CorpusEncoder, args, Path(corpus), ROWS_PER_TASK, Path(out), settings, schema,
                plan, parts, "encode corpus", meta)  # fmt: skip


def encode_queries_table(
    model_dir: str | os.PathLike, queries: Path, out: Path, settings: InferenceSettings,
    precision: str = "fp32", overrides: dict | None = None, parts: Path | None = None,
) -> dict:  # fmt: skip
    """Query vectors table (qid, vector) of the queries table (qid, text), in its order."""
    overrides = dict(overrides or {})
    model = DualEncoder.from_pretrained(str(model_dir), **overrides)
    args = (str(model_dir), settings.batch_size, precision, overrides)
    schema = pa.schema([("qid", pa.string()), embeddings_schema(model.dim).field("vector")])
    plan = {"step": "encode_queries", "device": _device(settings),
            **_model_plan(model_dir, precision, overrides, settings.batch_size)}  # fmt: skip
    return run_step(QueryEncoder, args, Path(queries), ROWS_PER_TASK, Path(out), settings, schema,
                plan, parts, "encode queries", {"dim": model.dim})  # fmt: skip


def score_lists(
    cross_dir: str | os.PathLike, lists: Path, columns: list[str], corpus: Path, queries: Path,
    out: Path, settings: InferenceSettings, precision: str = "fp32", depth: int | None = None,
    parts: Path | None = None,
) -> dict:  # fmt: skip
    """A table (qid, pids, scores) with the re-ranker's logit of every pid in each row's
    ``columns`` of the ``lists`` table (the first ``depth`` of each list), in the table's order
    and the lists' order, unsorted."""
    cache = Path(parts or default_parts(out)) / "corpus-cache"  # goes with the parts
    args = (str(cross_dir), str(corpus), str(queries), columns, depth, settings.batch_size,
            precision, str(cache))  # fmt: skip
    plan = {"step": "score_lists", "columns": list(columns), "depth": depth,
            "corpus": _input_stamp(Path(corpus)), "queries": _input_stamp(Path(queries)),
            "device": _device(settings),
            **_model_plan(cross_dir, precision, {}, settings.batch_size)}  # fmt: skip
    return run_step(PairScorer, args, Path(lists), LISTS_PER_TASK, Path(out), settings, CANDIDATES,
                plan, parts, "cross-encoder")  # fmt: skip
