"""Starting or joining Ray: locally bound to 127.0.0.1 with no dashboard, or a cluster address.

The only place that calls ``ray.init``, so every command and stage gets the same settings.
"""

from __future__ import annotations

import logging
import os

# Ray Train's placement-group cleaner asks the State API, which the dashboard serves, whether the
# controller is alive; with the dashboard off it warns about it every few seconds of training.
_NOISY_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)
_WORKER_SETUP = {"worker_process_setup_hook": "pipelines.ray_env.quiet_worker_logs"}


def quiet_worker_logs() -> None:
    """Runs in every Ray worker process: silence warnings that only say the dashboard is off."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=True, runtime_env=_WORKER_SETUP
        )
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=num_cpus,
        log_to_driver=True,
        configure_logging=False,
        runtime_env=_WORKER_SETUP,
    )
