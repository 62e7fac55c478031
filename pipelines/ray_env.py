"""Starting or joining Ray: locally bound to 127.0.0.1 with no dashboard, or a cluster address;
and making the driver's end the end of its workers.

The only place that calls ``ray.init``, so every command and stage gets the same settings.

A killed driver's workers must not go on writing its run: every Ray worker of this driver runs a
watchdog thread that exits the process within ``DRIVER_WATCH_S`` once the driver's pid is gone
(on the driver's host; on other nodes Ray itself ends a dead driver's workers). SIGTERM becomes
KeyboardInterrupt in the driver, so it unwinds like Ctrl-C: locks released, Ray shut down.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time

from pipelines.process_identity import identity, still_running

# Ray Train's placement-group cleaner asks the State API, which the dashboard serves, whether the
# controller is alive; with the dashboard off it warns about it every few seconds of training.
_NOISY_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)
_SETUP_HOOK = "pipelines.ray_env.setup_worker"
DRIVER_ENV = "RQA_DRIVER"  # set in every Ray worker of the driver: {"pid", "host", "create_time"}
DRIVER_WATCH_S = 0.25
EXIT_DRIVER_GONE = 75

logger = logging.getLogger(__name__)


def quiet_worker_logs() -> None:
    """Silence warnings that only say the dashboard is off."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def setup_worker() -> None:
    """Runs in every Ray worker process of this driver (Ray's worker_process_setup_hook)."""
    quiet_worker_logs()
    raw = os.environ.get(DRIVER_ENV)
    if raw:
        watch_driver(json.loads(raw))


def driver_identity() -> dict:
    return identity()


def driver_alive(driver: dict) -> bool:
    """Whether the driver process is still running (and its pid was not given to another;
    a step of the wall clock does not make it another: pipelines/process_identity.py)."""
    return still_running(driver)


def watch_driver(driver: dict, every_s: float = DRIVER_WATCH_S) -> threading.Thread | None:
    """Exit this process (os._exit, at once: no cleanup that could write) within ``every_s``
    of the driver's death. Only on the driver's host: elsewhere its pid means nothing."""
    if driver.get("host") != socket.gethostname():
        return None
    if not driver_alive(driver):
        return None  # not visible from here (a container's pid namespace): left to Ray, too

    def watch() -> None:
        while driver_alive(driver):
            time.sleep(every_s)
        print(
            f"rqa: driver pid {driver['pid']} has exited; Ray worker pid {os.getpid()} exits too",
            file=sys.stderr,
            flush=True,
        )
        os._exit(EXIT_DRIVER_GONE)

    thread = threading.Thread(target=watch, name="rqa-driver-watch", daemon=True)
    thread.start()
    return thread


def interrupt_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread, so it unwinds as Ctrl-C does (Ray's
    own handler, installed by ray.init, exits from inside the handler with a native dump)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)


def _runtime_env() -> dict:
    return {
        "worker_process_setup_hook": _SETUP_HOOK,
        "env_vars": {DRIVER_ENV: json.dumps(driver_identity())},
    }


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=True,
            runtime_env=_runtime_env(),
        )
    else:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(
            address="local",  # a new local Ray, never one that `ray start` left on this machine
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            num_cpus=num_cpus,
            log_to_driver=True,
            configure_logging=False,
            runtime_env=_runtime_env(),
        )
    interrupt_on_sigterm()
