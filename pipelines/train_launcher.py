"""Run the training loop of retrieval/training on N workers: Ray Train's TorchTrainer (CPU
workers with gloo, or one worker per GPU with nccl), or in this very process (``local``).

torchrun users call ``python -m pipelines.train_launcher CONFIG`` under torchrun instead.

One writer per output folder: the driver holds a RunLock on it, and every worker a WorkerLock
for as long as its process lives, so a relaunch waits for the workers of a killed run to exit
(pipelines/ray_env.py makes them exit within a second) instead of writing beside them.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipelines.launch_settings import LaunchSettings, load_train_job
from pipelines.ray_env import ensure_ray
from pipelines.run_lock import RunLock, WorkerLock
from retrieval.errors import ConfigError
from retrieval.training.config import TrainConfig
from retrieval.training.loop import train_worker
from retrieval.training.negatives import check_negatives

logger = logging.getLogger(__name__)
WORKERS_EXIT_WAIT_S = 30.0  # how long a relaunch waits for a killed run's workers to exit


def _worker(config_dict: dict) -> None:
    config = TrainConfig.model_validate(config_dict)
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
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    ensure_ray(how.ray_address)
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
        run_config=RunConfig(
            name=f"train-{config.kind}",
            storage_path=str(Path(config.output_dir).resolve() / "ray"),
        ),
    )
    try:
        trainer.fit()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (pipelines/ray_env.py): stop the workers now,
        import ray  # not at interpreter exit, and wait for them before the lock is released

        ray.shutdown()
        WorkerLock(config.output_dir).wait_until_free(WORKERS_EXIT_WAIT_S)
        raise


if __name__ == "__main__":  # torchrun entry: every process is one rank
    logging.basicConfig(level=logging.INFO)
    config = load_train_job(sys.argv[1])[0]
    with WorkerLock(config.output_dir):
        train_worker(config)
