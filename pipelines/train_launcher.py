"""Run the training loop of retrieval/training on N workers: Ray Train's TorchTrainer (CPU
workers with gloo, or one worker per GPU with nccl), or in this very process (``local``).

torchrun users call ``python -m pipelines.train_launcher CONFIG`` under torchrun instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipelines.ray_env import ensure_ray
from retrieval.training.config import TrainConfig, load_train_config
from retrieval.training.loop import train_worker

logger = logging.getLogger(__name__)


def _worker(config_dict: dict) -> None:
    train_worker(TrainConfig.model_validate(config_dict))


def launch(config: TrainConfig) -> Path:
    """Train and return the exported model folder; an interrupted run resumes when relaunched."""
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    if config.launcher == "local":
        if config.workers != 1:
            raise ValueError("launcher 'local' runs one worker; use 'ray' or torchrun for more")
        train_worker(config)
        return Path(config.output_dir) / "model"
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    ensure_ray(config.ray_address)
    trainer = TorchTrainer(
        _worker,
        train_loop_config=config.model_dump(mode="json"),
        scaling_config=ScalingConfig(
            num_workers=config.workers,
            use_gpu=config.use_gpu,
            resources_per_worker=None if config.use_gpu else {"CPU": 1},
        ),
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        run_config=RunConfig(
            name=f"train-{config.kind}",
            storage_path=str(Path(config.output_dir).resolve() / "ray"),
        ),
    )
    trainer.fit()
    return Path(config.output_dir) / "model"


if __name__ == "__main__":  # torchrun entry: every process is one rank
    logging.basicConfig(level=logging.INFO)
    train_worker(load_train_config(sys.argv[1]))
