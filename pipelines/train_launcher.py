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

from pipelines.launch_settings import LaunchSettings, load_train_job
from pipelines.ray_env import ensure_ray
from pipelines.run_lock import RunLock, WorkerLock
from pipelines.shared_storage import check_shared_run_dir
from retrieval.errors import ConfigError, UserError
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
        train_worker(config)


def launch(config: TrainConfig, how: LaunchSettings | None = None) -> Path:
    """Train and return the exported model folder; an interrupted run resumes when relaunched.
    Raises DirectoryInUseError if another live run trains into the same output folder."""
    how = how or LaunchSettings()
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


def _fit_on_ray(config: TrainConfig, how: LaunchSettings) -> None:
    from ray.train import ScalingConfig, WorkerGroupError
    from ray.train.torch import TorchConfig, TorchTrainer

    ensure_ray(how.ray_address)
    if how.ray_address:  # a cluster: every node must see where the workers write
        check_shared_run_dir(Path(config.output_dir))
    trainer = TorchTrainer(
        _worker,
        # what was set, not every default: a validator may refuse a default it was not given
        train_loop_config=config.model_dump(mode="json", exclude_unset=True),
        scaling_config=ScalingConfig(
            num_workers=how.workers,
            use_gpu=config.use_gpu,
            resources_per_worker=None if config.use_gpu else {"CPU": 1},
        ),
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
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
