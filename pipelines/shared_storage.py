"""Shared storage checked, not assumed: on a Ray cluster every node must see the run directory
at the same path (training workers write checkpoints there, actors read tables and write parts).

Before a run joins a cluster, the driver writes a token under the run directory, and a probe
task pinned to each alive node reads it and writes one of its own, which the driver reads back.
A node that cannot see or write the folder is one line naming the node and the path, before
any stage runs.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from retrieval.errors import UserError

PROBES = ".rqa-storage-probe"


class StorageNotSharedError(UserError):
    """A node of the cluster does not see the run directory."""


def probe(folder: str, token: str, node: str) -> str | None:
    """On one node: None if it reads the driver's token under ``folder`` and writes its own;
    else what failed."""
    path = Path(folder) / "driver"
    try:
        if path.read_text() != token:
            return f"reads another file at {path}"
        (Path(folder) / node).write_text(token)
    except OSError as err:
        return f"cannot use {folder} ({err.strerror or err})"
    return None


def check_shared_run_dir(run_dir: Path, timeout_s: float = 120) -> int:
    """Every alive node of the connected Ray cluster sees ``run_dir``; returns how many nodes
    were checked, or raises :class:`StorageNotSharedError` naming the first node that does not."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    folder = Path(run_dir).resolve() / PROBES / token
    folder.mkdir(parents=True)
    try:
        (folder / "driver").write_text(token)
        nodes = [node for node in ray.nodes() if node["Alive"]]
        task = ray.remote(num_cpus=0, max_retries=0)(probe)
        pending = {
            node["NodeID"]: task.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(str(folder), token, node["NodeID"])
            for node in nodes
        }
        for node in nodes:
            failed = ray.get(pending[node["NodeID"]], timeout=timeout_s)
            if failed is None and not (folder / node["NodeID"]).is_file():
                failed = f"wrote {folder / node['NodeID']}, which this machine does not see"
            if failed:
                raise StorageNotSharedError(
                    f"node {node['NodeManagerAddress']} (id {node['NodeID'][:12]}) {failed}: "
                    f"every node must see the run directory {run_dir} at the same path (a "
                    "filesystem they all mount)"
                )
        return len(nodes)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
