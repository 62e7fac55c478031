"""Run the training loop of retrieval/training on N workers: Ray Train's TorchTrainer (CPU
workers with gloo, or one worker per GPU with nccl), or in this very process (``local``).

torchrun users call ``python -m pipelines.train_launcher CONFIG`` under torchrun instead.

One writer per output folder: the driver holds a RunLock on it, and every worker a WorkerLock
for as long as its process lives, so a relaunch waits for the workers of a killed run to exit
(pipelines/ray_env.py makes them exit within a second) instead of writing beside them.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

from pipelines.launch_settings import LaunchSettings, load_train_job, per_worker_batch
from pipelines.ray_env import ensure_ray
from pipelines.run_lock import RunLock, WorkerLock
from pipelines.shared_storage import check_shared_run_dir
from retrieval.errors import ConfigError, UserError
from retrieval.tables.store import write_json_atomic
from retrieval.training.config import TrainConfig, validate_train_config
from retrieval.training.loop import train_worker
from retrieval.training.negatives import check_negatives

logger = logging.getLogger(__name__)
WORKERS_EXIT_WAIT_S = 30.0  # how long a relaunch waits for a killed run's workers to exit


class WorkersLostError(UserError, RuntimeError):
    """Ray Train lost a worker's process or node more often than ``max_failures`` allows: one
    line that says how to go on, not Ray's traceback of a process that is gone."""


def _worker(config_dict: dict) -> None:
    config = validate_train_config(config_dict)
    with WorkerLock(config.output_dir):
        summary = train_worker(config)
        record_placement(config, summary)


def record_placement(config: TrainConfig, summary: dict) -> None:
    """Rank 0 adds where every rank ran (Ray node, the GPUs Ray gave it) and each rank's batch
    to train_summary.json: what a cluster run can be checked against."""
    import ray
    import torch.distributed as dist

    here = {"node": ray.get_runtime_context().get_node_id(), "gpus": ray.get_gpu_ids()}
    placement = [None] * dist.get_world_size()
    dist.all_gather_object(placement, here)
    if dist.get_rank() == 0:
        path = Path(config.output_dir) / "train_summary.json"
        record = {**summary, "placement": placement, "batch_size": config.batch_size}
        write_json_atomic(path, record)


def launch(config: TrainConfig, how: LaunchSettings | None = None) -> Path:
    """Train and return the exported model folder; an interrupted run resumes when relaunched.
    Raises DirectoryInUseError if another live run trains into the same output folder."""
    how, config = resolve_launch(config, how or LaunchSettings())
    check_negatives(config)  # a one-line error here, not a traceback from a worker
    if how.launcher == "local" and how.workers != 1:
        raise ConfigError("launcher 'local' runs one worker; use 'ray' or torchrun for more")
    with RunLock(config.output_dir, purpose="training"):
        WorkerLock(config.output_dir).wait_until_free(WORKERS_EXIT_WAIT_S)
        if how.launcher == "local":
            with WorkerLock(config.output_dir):
                train_worker(config)
        else:
            _fit_on_ray(config, how)
        WorkerLock(config.output_dir).path.unlink(missing_ok=True)  # our workers are done
    return Path(config.output_dir) / "model"


def resolve_launch(config: TrainConfig, how: LaunchSettings) -> tuple:
    """``(how, config)`` with ``workers: auto`` counted from the Ray cluster's GPUs and each
    worker's share of ``global_batch_size`` as its batch_size."""
    if how.workers == "auto" and how.launcher == "ray" and config.use_gpu:
        import ray

        ensure_ray(how.ray_address)
        how = how.resolved(ray.cluster_resources().get("GPU", 0))
    how = how.resolved(0)
    config = per_worker_batch(config, how, config.output_dir)
    if how.global_batch_size:
        logger.info("global batch %d: %d workers x %d", how.global_batch_size, how.workers,
                    config.batch_size)  # fmt: skip
    return how, config


def workers_have_cuda() -> bool:
    """Whether a process given one of the cluster's GPUs sees a CUDA device. Ray schedules the
    GPUs a node declares (``ray start --num-gpus``), which a machine may lack: there training
    falls back to gloo on the CPU, as the workers' code does to the CPU."""
    import ray
    import torch

    probe = ray.remote(num_gpus=1, num_cpus=0)(torch.cuda.is_available)
    return bool(ray.get(probe.remote()))


def _fit_on_ray(config: TrainConfig, how: LaunchSettings) -> None:
    from ray.train import ScalingConfig, WorkerGroupError
    from ray.train.torch import TorchConfig, TorchTrainer

    ensure_ray(how.ray_address)
    if how.ray_address:  # a cluster: every node must see where the workers write
        check_shared_run_dir(Path(config.output_dir))
    backend = "nccl" if config.use_gpu and workers_have_cuda() else "gloo"
    trainer = TorchTrainer(
        _worker,
        # what was set, not every default: a validator may refuse a default it was not given
        train_loop_config=config.model_dump(mode="json", exclude_unset=True),
        scaling_config=ScalingConfig(
            num_workers=how.workers,
            use_gpu=config.use_gpu,
            resources_per_worker=None if config.use_gpu else {"CPU": 1},
        ),
        torch_config=TorchConfig(backend=backend),
        run_config=run_config(config, how),
    )
    try:
        trainer.fit()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (pipelines/ray_env.py): stop the workers now,
        import ray  # not at interpreter exit, and wait for them before the lock is released

        ray.shutdown()
        WorkerLock(config.output_dir).wait_until_free(WORKERS_EXIT_WAIT_S)
        raise
    except WorkerGroupError as err:
        lost = lost_ranks(err)
        if not lost:  # an error in the training code: its traceback is what helps
            raise
        raise WorkersLostError(lost_message(config, how, lost)) from err


def run_config(config: TrainConfig, how: LaunchSettings):
    """Ray Train's RunConfig: where it keeps its run records, and how many worker-group failures
    it recovers from. A restarted group resumes from OUTPUT_DIR/checkpoints, which the training
    loop writes itself, so OUTPUT_DIR must be a folder every node sees."""
    from ray.train import FailureConfig, RunConfig

    return RunConfig(
        name=run_name(config, how),
        storage_path=how.storage_path or str(Path(config.output_dir).resolve() / "ray"),
        failure_config=FailureConfig(max_failures=how.max_failures),
    )


def run_name(config: TrainConfig, how: LaunchSettings) -> str:
    """``train-KIND`` under OUTPUT_DIR/ray. A storage_path may be shared by runs and stages:
    there the output folder's name and a digest of its path keep their records apart, and the
    same for every relaunch of one run."""
    name = f"train-{config.kind}"
    if how.storage_path is None:
        return name
    out = Path(config.output_dir).resolve()
    return f"{name}-{out.name}-{hashlib.sha256(str(out).encode()).hexdigest()[:8]}"


def lost_ranks(err: Exception) -> dict[int, Exception]:
    """The workers of a failed group whose process or node went away, by rank (the others then
    fail on the broken collective; their errors say nothing new). Ray Train reports such a
    worker as a failed health check that holds the actor's error."""
    from ray.exceptions import RayActorError

    lost = {}
    for rank, failure in (getattr(err, "worker_failures", None) or {}).items():
        failure = getattr(failure, "health_check_failure", failure)
        if isinstance(failure, RayActorError):
            lost[rank] = failure
    return lost


def lost_message(config: TrainConfig, how: LaunchSettings, lost: dict[int, Exception]) -> str:
    ranks = ", ".join(str(rank) for rank in sorted(lost))
    kind = type(next(iter(lost.values()))).__name__
    used = f"after {how.max_failures} restart(s)" if how.max_failures else "with no restart"
    return (
        f"training on Ray stopped: lost worker rank {ranks} ({kind}: its process or node went "
        f"away) {used} (max_failures: {how.max_failures}). Run the same command again to "
        f"resume from the last checkpoint in {config.output_dir}, or set max_failures (in a "
        f"pipeline: ray.max_failures) so that Ray Train restarts lost workers itself"
    )


if __name__ == "__main__":  # torchrun entry: every process is one rank
    logging.basicConfig(level=logging.INFO)
    config = load_train_job(sys.argv[1])[0]
    with WorkerLock(config.output_dir):
        train_worker(config)
