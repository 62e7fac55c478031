"""One writer per directory: RunLock (a run, or training on its work folder), WorkerLock (the
workers of a killed run), and a driver's Ray workers that exit with it, with real processes."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.run_lock import LOCK_FILE, DirectoryInUseError, RunLock, WorkerLock
from retrieval.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def start(code: str) -> subprocess.Popen:
    """Run ``code`` in a fresh Python; wait until it prints 'ready'."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def hold(directory: Path, purpose: str = "rqa run") -> subprocess.Popen:
    return start(
        f"""
        import time
        from pipelines.run_lock import RunLock
        lock = RunLock({str(directory)!r}, purpose={purpose!r}).acquire()
        print("ready", flush=True)
        time.sleep(600)
        """
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_lock_is_exclusive_and_leaves_nothing_behind(tmp_path):
    with RunLock(tmp_path / "run") as lock:
        assert lock.path.is_file()
        with pytest.raises(DirectoryInUseError):
            RunLock(tmp_path / "run").acquire()  # a second holder, even in this process
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    RunLock(tmp_path / "run").acquire().release()  # free again


def test_second_run_stops_with_one_line_naming_the_directory_and_the_holder(tmp_path):
    holder = hold(tmp_path / "run")
    try:
        with pytest.raises(DirectoryInUseError) as err:
            RunLock(tmp_path / "run").acquire()
    finally:
        stop(holder)
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert str(tmp_path / "run") in message and f"rqa run pid {holder.pid} on " in message


def test_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    holder = hold(tmp_path / "run")
    stop(holder)  # SIGKILL: no release, the lock file still names it
    assert str(holder.pid) in (tmp_path / "run" / LOCK_FILE).read_text()
    with caplog.at_level(logging.WARNING, logger="pipelines.run_lock"):
        with RunLock(tmp_path / "run"):
            assert f'"pid": {os.getpid()}' in (tmp_path / "run" / LOCK_FILE).read_text()
    assert f"pid {holder.pid}" in caplog.text and "taking over" in caplog.text


def test_a_child_that_outlives_the_holder_keeps_the_directory_busy(tmp_path):
    """A forked child shares its parent's lock: the directory stays busy, and the message says
    the holder exited and which process still holds the lock."""
    proc = start(
        f"""
        import os, time
        from pipelines.run_lock import RunLock
        lock = RunLock({str(tmp_path / "run")!r}).acquire()
        if os.fork() == 0:
            print("ready", flush=True)
            time.sleep(600)
        os._exit(0)
        """
    )
    proc.wait()
    (child,) = holders_of(tmp_path / "run" / LOCK_FILE)
    try:
        with pytest.raises(DirectoryInUseError, match=rf"pid {proc.pid} .* has exited.*{child}"):
            RunLock(tmp_path / "run").acquire()
    finally:
        os.kill(child, signal.SIGKILL)


def holders_of(path: Path) -> list[int]:
    import psutil

    pids = []
    for process in psutil.process_iter():
        try:
            if any(f.path == str(path.resolve()) for f in process.open_files()):
                pids.append(process.pid)
        except psutil.Error:
            continue
    return pids


def test_waiting_for_workers_of_a_killed_run(tmp_path):
    worker = start(
        f"""
        import time
        from pipelines.run_lock import WorkerLock
        with WorkerLock({str(tmp_path)!r}):
            print("ready", flush=True)
            time.sleep(600)
        """
    )
    try:
        with pytest.raises(DirectoryInUseError, match=rf"still write here \(pid {worker.pid}\)"):
            WorkerLock(tmp_path).wait_until_free(timeout_s=0.3)
    finally:
        stop(worker)
    WorkerLock(tmp_path).wait_until_free(timeout_s=0.3)
    with WorkerLock(tmp_path), WorkerLock(tmp_path):  # workers share it
        pass


def test_training_refuses_a_work_folder_another_run_trains_into(tmp_path, scifact_tables):
    from pipelines.launch_settings import LaunchSettings
    from pipelines.train_launcher import launch
    from retrieval.training.config import DualConfig

    config = DualConfig(
        model=str(tmp_path / "unused-model"),
        output_dir=tmp_path / "work",
        data={"tables": str(scifact_tables)},
        random_negatives=True,
    )
    holder = hold(tmp_path / "work", purpose="training")
    try:
        with pytest.raises(DirectoryInUseError, match=f"training pid {holder.pid}"):
            launch(config, LaunchSettings(launcher="local"))
    finally:
        stop(holder)


def test_ray_workers_exit_soon_after_their_driver_is_killed(tmp_path):
    """A stand-in for a Ray worker (Ray runs setup_worker in each with RQA_DRIVER set) keeps
    writing until the watchdog sees the driver gone; it must stop within a second."""
    beat = tmp_path / "beat"
    driver = start(
        f"""
        import json, subprocess, sys, time
        from pipelines.ray_env import DRIVER_ENV, driver_identity
        env = {{**__import__("os").environ, DRIVER_ENV: json.dumps(driver_identity())}}
        code = (
            "import time\\n"
            "from pipelines.ray_env import setup_worker\\n"
            "setup_worker()\\n"
            "while True:\\n"
            "    open({str(beat)!r}, 'a').write(f'{{time.time()}} ')\\n"
            "    time.sleep(0.02)\\n"
        )
        worker = subprocess.Popen([sys.executable, "-c", code], env=env)
        while not __import__("os").path.exists({str(beat)!r}):
            time.sleep(0.02)
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    import psutil

    (worker,) = psutil.Process(driver.pid).children()
    killed_at = time.time()
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    while _running(worker):  # exited: gone, or a zombie its new parent has not reaped yet
        assert time.time() - killed_at < 1.5, "the worker outlived its driver"
        time.sleep(0.02)
    assert float(beat.read_text().split()[-1]) < killed_at + 1.0  # it stopped writing too


def _running(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigterm_unwinds_like_ctrl_c():
    proc = start(
        """
        import time
        from pipelines.ray_env import interrupt_on_sigterm
        interrupt_on_sigterm()
        try:
            print("ready", flush=True)
            time.sleep(600)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.read().strip() == "interrupted"
    assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_a_filesystem_without_flock_is_one_line_before_any_work(tmp_path, monkeypatch, code):
    from pipelines import run_lock

    def no_flock(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(run_lock.fcntl, "flock", no_flock)
    with pytest.raises(run_lock.LockUnsupportedError) as err:
        RunLock(tmp_path / "run").acquire()
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "run" / ".rqa.lock") in message
    assert "-o flock" in message
    with pytest.raises(run_lock.LockUnsupportedError):
        run_lock.WorkerLock(tmp_path / "work").__enter__()
