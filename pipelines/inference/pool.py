"""Running one worker class over the slices of a table, each slice's result written as one part
of the output table by the worker itself: in this process, or on a Ray Data pool of actors.

The workers read their slice themselves (a Parquet shard, a row range) and write their result
into the parts folder (retrieval/tables/parts.py), so the driver sends paths and receives only
each part's manifest entry (name, rows, sha256): nothing that grows with the data passes
through it. Parts already written (a rerun after a crash) are not computed again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipelines.driver_traffic import received
from pipelines.inference.settings import InferenceSettings
from retrieval.tables.parts import finished_parts, write_part
from retrieval.tables.store import read_manifest, shard_paths

logger = logging.getLogger(__name__)
ENTRY = pa.schema(
    [("index", pa.int64()), ("name", pa.string()), ("rows", pa.int64()), ("sha256", pa.string())]
)


def table_slices(table_dir: str | os.PathLike, rows: int) -> list[dict]:
    """``{"index", "path", "start", "rows"}`` pieces of at most ``rows`` rows covering the table
    in order (from its manifest: no data is read); ``index`` numbers the output's parts."""
    manifest = read_manifest(table_dir)
    pieces = []
    for path, entry in zip(shard_paths(table_dir), manifest["files"]):
        for start in range(0, entry["rows"], rows):
            pieces.append({"index": len(pieces), "path": str(path), "start": start,
                           "rows": min(rows, entry["rows"] - start)})  # fmt: skip
    return pieces


class PartWriter:
    """``worker(*args)`` on one slice a call, its result written as part ``index`` of
    ``folder``; returns the part's manifest entry. Runs as a Ray Data actor or in the driver."""

    def __init__(self, worker: type, args: tuple, folder: str, *, gpu=False, cpus=None):
        self.work, self.folder = worker(*args, gpu=gpu, cpus=cpus), folder

    def __call__(self, batch: dict) -> pa.Table:
        index = int(batch["index"][0])
        worker = {**where(), **_precision_of(self.work)}
        entry = write_part(self.folder, index, self.work(batch), worker=worker)
        return pa.Table.from_pylist([{"index": index, **entry}], schema=ENTRY)


def _precision_of(work) -> dict:
    """The precision a worker resolved where it runs ({} for one without): ``auto`` can be bf16
    on one node and fp32 on another, so each part records its own."""
    precision = getattr(work, "precision", None)
    return {"precision": precision} if precision else {}


def where() -> dict:
    """The Ray node and the GPUs Ray gave this worker ({} in the driver, outside Ray)."""
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return {}
    return {"node": ray.get_runtime_context().get_node_id(), "gpus": ray.get_gpu_ids()}


def run_to_parts(
    worker: type, args: tuple, items: list[dict], settings: InferenceSettings, parts: Path
) -> Iterator[dict]:
    """Every item's part written into ``parts`` (those already there are kept); yields each
    part's entry ({index, name, rows, sha256}), the kept ones first.

    ``settings.actors == 0``: one worker in this process (``cpus=None``: the driver's threads
    stay as they are). Otherwise ``actors`` Ray Data actors (Ray must be running:
    ``pipelines.ray_env.ensure_ray``), each built once; a lost actor is restarted and its slice
    done again (Ray Data's task retries), which rewrites the same part.
    """
    done = finished_parts(parts)
    todo = [item for item in items if item["index"] not in done]
    if done:
        logger.info("%s: reusing %d of %d parts already written", parts, len(done), len(items))
    for index, entry in sorted(done.items()):
        yield {"index": index, **entry}
    gpu = settings.gpus_per_actor > 0
    if not todo:
        return
    if settings.count() == 0:
        local = PartWriter(worker, args, str(parts), gpu=gpu)
        for item in todo:
            yield local({key: [value] for key, value in item.items()}).to_pylist()[0]
        return
    for batch in _ray_pool(worker, args, todo, settings, gpu, str(parts)):
        yield from received(batch).to_pylist()


def _ray_pool(worker, args, items, settings, gpu, folder) -> Iterator[pa.Table]:
    import ray

    logger.info(
        "%s on %d Ray Data actors (%g CPUs, %g GPUs each), %d slices",
        worker.__name__, settings.count(), settings.cpus_per_actor, settings.gpus_per_actor,
        len(items),
    )  # fmt: skip
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    dataset = dataset.map_batches(
        PartWriter,
        fn_constructor_args=(worker, args, folder),
        fn_constructor_kwargs={"gpu": gpu, "cpus": settings.cpus_per_actor},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=settings.count()),
        num_cpus=settings.cpus_per_actor,
        num_gpus=settings.gpus_per_actor,
        max_restarts=-1,  # a lost actor comes back; its slice is retried on it
        max_task_retries=-1,
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
