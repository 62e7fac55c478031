"""Running one worker class over the slices of a table: in this process, or on a Ray Data pool
of actors. The workers read their slice themselves (a Parquet shard, a row range), so the
driver sends paths, not data, and receives only the results it streams into a table."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pyarrow as pa

from pipelines.inference.settings import InferenceSettings
from retrieval.tables.store import read_manifest, shard_paths

logger = logging.getLogger(__name__)


def table_slices(table_dir: str | os.PathLike, rows: int) -> list[dict]:
    """``{"path", "start", "rows"}`` pieces of at most ``rows`` rows covering the table in order
    (from its manifest: no data is read)."""
    manifest = read_manifest(table_dir)
    pieces = []
    for path, entry in zip(shard_paths(table_dir), manifest["files"]):
        for start in range(0, entry["rows"], rows):
            pieces.append(
                {"path": str(path), "start": start, "rows": min(rows, entry["rows"] - start)}
            )
    return pieces


def run_workers(
    worker: type, args: tuple, items: list[dict], settings: InferenceSettings
) -> Iterator[pa.Table]:
    """``worker(*args)(item)`` for every item, results in item order.

    ``settings.actors == 0``: one worker in this process. Otherwise ``actors`` Ray Data actors
    (Ray must be running: ``pipelines.ray_env.ensure_ray``), each built once with
    ``gpu=gpus_per_actor > 0`` appended to ``args``; Ray keeps the output in input order.
    """
    gpu = settings.gpus_per_actor > 0
    if settings.actors == 0:
        local = worker(*args, gpu=gpu)  # the driver's threads stay as they are
        for item in items:
            yield local({key: [value] for key, value in item.items()})
        return
    yield from _ray_pool(worker, args, items, settings, gpu)


def _ray_pool(worker, args, items, settings, gpu) -> Iterator[pa.Table]:
    import ray

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    logger.info(
        "%s on %d Ray Data actors (%g CPUs, %g GPUs each)",
        worker.__name__, settings.actors, settings.cpus_per_actor, settings.gpus_per_actor,
    )  # fmt: skip
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    dataset = dataset.map_batches(
        worker,
        fn_constructor_args=args,
        fn_constructor_kwargs={"gpu": gpu, "cpus": settings.cpus_per_actor},
        batch_size=1,
        concurrency=settings.actors,
        num_cpus=settings.cpus_per_actor,
        num_gpus=settings.gpus_per_actor,
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
