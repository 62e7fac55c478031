"""A process named by pid and start (pipelines/process_identity.py) is still itself after the
wall clock steps, and is not a later process that got its pid; the Ray workers' watchdog that
ends them with their driver does not end them when the clock steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from pipelines.process_identity import identity, still_running
from pipelines.ray_env import DRIVER_ENV, EXIT_DRIVER_GONE, driver_alive, driver_identity

REPO = Path(__file__).resolve().parents[2]
STEP_S = 3600.0  # the wall clock set an hour ahead: the kernel's boot time moves with it

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="steps the clock through psutil's Linux backend"
)


def step_clock(monkeypatch, seconds: float = STEP_S) -> None:
    """What a step of the wall clock does to psutil on Linux: /proc/stat's btime moves, and
    every create_time (start ticks since boot + btime) with it."""
    import psutil._pslinux as linux

    real = linux.boot_time
    monkeypatch.setattr(linux, "boot_time", lambda: real() + seconds)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_process_is_still_itself_after_the_wall_clock_steps(sleeper, monkeypatch):
    named, me = identity(psutil.Process(sleeper.pid)), driver_identity()
    before = psutil.Process(sleeper.pid).create_time()
    step_clock(monkeypatch)
    assert psutil.Process(sleeper.pid).create_time() == pytest.approx(before + STEP_S)
    assert still_running(named)
    assert driver_alive(me)  # this process, named before the step


def test_a_run_lock_holder_is_not_called_exited_after_the_wall_clock_steps(tmp_path, monkeypatch):
    from pipelines.run_lock import LOCK_FILE, RunLock, busy_message

    with RunLock(tmp_path / "run") as lock:
        holder = json.loads(lock.path.read_text())
        step_clock(monkeypatch)
        message = busy_message(tmp_path / "run", holder, tmp_path / "run" / LOCK_FILE)
    assert "has exited" not in message
    assert f"in use by rqa run pid {os.getpid()}" in message


def test_a_later_process_given_the_same_pid_is_not_the_one_named(sleeper):
    named = identity(psutil.Process(sleeper.pid))
    assert still_running(named)
    assert not still_running({**named, "after_boot_s": named["after_boot_s"] - 1.0})
    sleeper.kill()
    sleeper.wait()
    assert not still_running(named)


def test_an_identity_written_before_after_boot_s_is_compared_by_create_time(sleeper):
    """Lock files written by an earlier version hold create_time only."""
    named = identity(psutil.Process(sleeper.pid))
    old = {"pid": named["pid"], "create_time": named["create_time"]}
    assert still_running(old)
    assert not still_running({**old, "create_time": named["create_time"] - 1.0})
    assert still_running({"pid": named["pid"]})  # nothing to compare: the pid decides


WORKER = """
import sys, time
import psutil._pslinux as linux
from pipelines.ray_env import setup_worker
setup_worker()  # the watchdog thread, watching this test's process
time.sleep(0.3)
real = linux.boot_time
linux.boot_time = lambda: real() + {step}
time.sleep(1.5)  # six times the watchdog's period
print("survived", flush=True)
"""


def test_ray_workers_are_not_ended_when_the_wall_clock_steps():
    """A stand-in for a Ray worker of this (live) driver whose clock steps an hour once its
    watchdog runs: it must go on, not exit as if the driver were gone."""
    env = {**os.environ, DRIVER_ENV: json.dumps(driver_identity())}
    code = textwrap.dedent(WORKER.format(step=STEP_S))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != EXIT_DRIVER_GONE, done.stderr
    assert (done.returncode, done.stdout.strip()) == (0, "survived"), done.stderr
