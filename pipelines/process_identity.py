"""Naming a process so that another process can later tell whether it still runs.

A pid alone is not enough (the kernel hands it out again), so a process is its pid plus when it
started. psutil's ``create_time()`` is that start as a wall-clock time: on Linux the start in
clock ticks since boot plus the boot time, which the kernel derives from the wall clock. When
the clock steps (NTP, a VM restored from a snapshot), every process's create_time moves with it,
and a comparison with a value recorded before the step says "a different process". A training
run lost its train_joint workers that way: their watchdog saw the driver "gone" after the VM's
clock was set and ended them. The start measured from boot (create_time minus boot time, read
together) does not move, so that is what is recorded and compared.
"""

from __future__ import annotations

import socket

import psutil

# two readings of the same process's start differ by rounding only (clock ticks: 10 ms)
SAME_START_S = 0.05


def started_after_boot(process: psutil.Process) -> float:
    """Seconds from boot to the process's start: unchanged by steps of the wall clock."""
    return process.create_time() - psutil.boot_time()


def identity(process: psutil.Process | None = None) -> dict:
    """{"pid", "host", "create_time", "after_boot_s"} of ``process`` (this one by default);
    create_time is kept for people to read ("started at")."""
    process = process or psutil.Process()
    return {
        "pid": process.pid,
        "host": socket.gethostname(),
        "create_time": process.create_time(),
        "after_boot_s": started_after_boot(process),
    }


def still_running(named: dict) -> bool:
    """Whether the process ``named`` (an identity() of this host) is still running: its pid is
    there, not a zombie, and started when it did (not a later process given the same pid).
    An identity written before "after_boot_s" existed is compared by its create_time, and
    one with neither by its pid alone."""
    try:
        process = psutil.Process(int(named["pid"]))
        return _same_start(process, named) and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def _same_start(process: psutil.Process, named: dict) -> bool:
    if named.get("after_boot_s") is not None:
        return abs(started_after_boot(process) - named["after_boot_s"]) < SAME_START_S
    if named.get("create_time") is not None:
        return abs(process.create_time() - named["create_time"]) < SAME_START_S
    return True
