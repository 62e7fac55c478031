"""Corpus encoding on Ray Data: encoder actors (one per GPU, or per slot of CPUs) each take a
corpus shard at a time, and the driver streams their vectors into an embeddings table.

This is how the mine and augment stages encode a corpus of tens of millions of passages across a
cluster; on one machine with ``actors: 0`` they call ``retrieval.encoding.encode_corpus`` in the
driver instead. The table written is the same either way (same rows, same vectors), and it is
written by the driver with ``write_table``, so it appears atomically with its manifest.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from retrieval.encoding import embeddings_table, encode_passages
from retrieval.models import DualEncoder
from retrieval.precision import resolve_precision
from retrieval.tables.schemas import embeddings_schema
from retrieval.tables.store import read_manifest, shard_paths, write_table

logger = logging.getLogger(__name__)
ROWS_PER_TASK = 2048


class ShardEncoder:
    """A Ray Data actor: loads the dual encoder once, then encodes one corpus shard a call.

    Actors read their shards themselves (a Parquet file each), so memory follows one shard and
    no Ray Data read task competes with the actors for CPUs (on a 2-CPU machine it would wait
    forever behind two 1-CPU actors).
    """

    def __init__(
        self, model_dir: str, batch_size: int, precision: str, dtype: str, gpu: bool, cpus: float
    ):
        import torch

        # Ray leaves an actor's torch at one thread; use the CPUs the actor was given.
        torch.set_num_threads(max(1, int(cpus)))
        self.model = DualEncoder.from_pretrained(model_dir).eval()
        if gpu:
            self.model.to("cuda")
        self.batch_size, self.dtype = batch_size, dtype
        self.precision = resolve_precision(precision, torch.device("cuda" if gpu else "cpu"))

    def __call__(self, batch: dict) -> pa.Table:
        (path,) = batch["path"]
        shard = pq.read_table(str(path), columns=["pid", "title", "text"])
        vectors = encode_passages(
            self.model,
            shard["title"].to_pylist(),
            shard["text"].to_pylist(),
            self.batch_size,
            show_progress=False,
            precision=self.precision,
        )
        return embeddings_table(shard["pid"], np.asarray(vectors), self.dtype)


def encode_corpus_ray(
    model_dir: str | os.PathLike,
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    actors: int,
    batch_size: int = 32,
    dtype: str = "float32",
    precision: str = "fp32",
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
) -> dict:
    """Encode ``corpus_dir`` with ``actors`` Ray Data actors into an embeddings table at
    ``out_dir``; returns its manifest. Ray must be running (``pipelines.ray_env.ensure_ray``)."""
    import ray

    if actors < 1:
        raise ValueError(f"actors must be at least 1, got {actors}")
    corpus_dir = Path(corpus_dir)
    total = read_manifest(corpus_dir)["rows"]
    model = DualEncoder.from_pretrained(model_dir)  # for dim and settings only
    dataset = ray.data.from_items([{"path": str(p)} for p in shard_paths(corpus_dir)])
    dataset = dataset.map_batches(
        ShardEncoder,
        fn_constructor_args=(
            str(model_dir),
            batch_size,
            precision,
            dtype,
            gpus_per_actor > 0,
            cpus_per_actor,
        ),
        batch_size=1,
        concurrency=actors,
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
    )
    logger.info("encoding %s on %d Ray Data actors into %s", corpus_dir, actors, out_dir)

    def pieces():
        seen = 0
        with tqdm(total=total, desc="encode corpus (Ray Data)") as bar:
            for piece in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                seen += piece.num_rows
                bar.update(piece.num_rows)
                yield piece
        if seen != total:  # raised inside write_table, so no table is left behind
            raise RuntimeError(f"{out_dir}: encoded {seen} of {total} corpus rows")

    meta = {"dim": model.dim, "dtype": dtype, "normalized": model.settings.normalize}
    used = resolve_precision(precision, "cuda" if gpus_per_actor > 0 else "cpu")
    if used != "fp32":
        meta["precision"] = used
    return write_table(out_dir, pieces(), embeddings_schema(model.dim, dtype), meta=meta)
