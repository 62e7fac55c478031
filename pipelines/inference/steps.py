"""The three inference steps of the pipeline, each a table in and a table out through a pool of
workers (pool.run_workers): the driver streams results into the output table with a progress
bar and never holds the whole input or output."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
from tqdm.auto import tqdm

from pipelines.inference.pool import run_workers, table_slices
from pipelines.inference.settings import InferenceSettings
from pipelines.inference.workers import CorpusEncoder, PairScorer, QueryEncoder
from retrieval.models import DualEncoder
from retrieval.precision import resolve_precision
from retrieval.tables.schemas import CANDIDATES, embeddings_schema
from retrieval.tables.store import read_manifest, write_table

ROWS_PER_TASK = 2048  # texts a worker encodes per call
LISTS_PER_TASK = 1024  # queries' lists a worker scores per call


def _counted(pieces: Iterable[pa.Table], total: int, desc: str, where: Path) -> Iterator[pa.Table]:
    seen = 0
    with tqdm(total=total, desc=desc) as bar:
        for piece in pieces:
            seen += piece.num_rows
            bar.update(piece.num_rows)
            yield piece
    if seen != total:  # raised inside write_table, so no table is left behind
        raise RuntimeError(f"{where}: got {seen} of {total} rows back from the workers")


def _device(settings: InferenceSettings) -> str:
    return "cuda" if settings.gpus_per_actor > 0 else "cpu"


def encode_corpus_table(
    model_dir: str | os.PathLike, corpus: Path, out: Path, settings: InferenceSettings,
    precision: str = "fp32", dtype: str = "float32", overrides: dict | None = None,
) -> dict:  # fmt: skip
    """Embeddings table (pid, vector) of the corpus table; returns its manifest.
    ``overrides``: model settings that replace the saved ones (the zero-shot model's)."""
    overrides = dict(overrides or {})
    model = DualEncoder.from_pretrained(str(model_dir), **overrides)  # dim and settings only
    args = (str(model_dir), settings.batch_size, precision, dtype, overrides)
    pieces = run_workers(CorpusEncoder, args, table_slices(corpus, ROWS_PER_TASK), settings)
    meta = {"dim": model.dim, "dtype": dtype, "normalized": model.settings.normalize}
    used = resolve_precision(precision, _device(settings))
    if used != "fp32":
        meta["precision"] = used
    total = read_manifest(corpus)["rows"]
    counted = _counted(pieces, total, "encode corpus", out)
    return write_table(out, counted, embeddings_schema(model.dim, dtype), meta=meta)


def encode_queries_table(
    model_dir: str | os.PathLike, queries: Path, out: Path, settings: InferenceSettings,
    precision: str = "fp32", overrides: dict | None = None,
) -> dict:  # fmt: skip
    """Query vectors table (qid, vector) of the queries table (qid, text), in its order."""
    overrides = dict(overrides or {})
    model = DualEncoder.from_pretrained(str(model_dir), **overrides)
    args = (str(model_dir), settings.batch_size, precision, overrides)
    pieces = run_workers(QueryEncoder, args, table_slices(queries, ROWS_PER_TASK), settings)
    schema = pa.schema([("qid", pa.string()), embeddings_schema(model.dim).field("vector")])
    counted = _counted(pieces, read_manifest(queries)["rows"], "encode queries", out)
    return write_table(out, counted, schema, meta={"dim": model.dim})


def score_lists(
    cross_dir: str | os.PathLike, lists: Path, columns: list[str], corpus: Path, queries: Path,
    out: Path, settings: InferenceSettings, precision: str = "fp32", depth: int | None = None,
) -> dict:  # fmt: skip
    """A table (qid, pids, scores) with the re-ranker's logit of every pid in each row's
    ``columns`` of the ``lists`` table (the first ``depth`` of each list), in the table's order
    and the lists' order, unsorted."""
    args = (
        str(cross_dir),
        str(corpus),
        str(queries),
        columns,
        depth,
        settings.batch_size,
        precision,
    )
    pieces = run_workers(PairScorer, args, table_slices(lists, LISTS_PER_TASK), settings)
    counted = _counted(pieces, read_manifest(lists)["rows"], "cross-encoder", out)
    return write_table(out, counted, CANDIDATES)
