"""One writer per directory: the exclusive lock a run holds on its run directory (and training on
its work folder), and the shared lock each training worker holds on the folder it writes.

Both are flock(2) locks, so the kernel drops a lock the moment its holder dies: a lock left by a
killed run is free, and taking it over needs no guessing. The lock file only says who holds it.
A filesystem without flock (Lustre mounted without ``-o flock``, some FUSE and object-store
mounts) is one line saying so before any work: no lock is better guessed than held.
Not here: what a run writes, or how its workers are stopped (pipelines/ray_env.py).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path

import psutil

from pipelines.process_identity import identity, still_running
from retrieval.errors import UserError

logger = logging.getLogger(__name__)
LOCK_FILE = ".rqa.lock"
WORKERS_FILE = ".rqa-workers.lock"


class DirectoryInUseError(UserError):
    """Another live run (or a live worker of one) writes the directory."""


class LockUnsupportedError(UserError):
    """The directory's filesystem gives no flock."""


def flock(fd: int, operation: int, path: Path) -> None:
    """fcntl.flock, with a filesystem that has no flock turned into one line naming the path."""
    try:
        fcntl.flock(fd, operation)
    except (BlockingIOError, InterruptedError):
        raise
    except OSError as err:
        raise LockUnsupportedError(
            f"{path}: this filesystem gives no flock locks ({os.strerror(err.errno)}): put the "
            "run directory on one that does (NFSv4, or Lustre mounted with -o flock)"
        ) from None


class RunLock:
    """``with RunLock(run_dir): ...``: this process is the only run writing ``run_dir``.

    A second RunLock on the same directory, from any process (on any host sharing the file
    system), raises :class:`DirectoryInUseError` at once with a one-line message naming the
    directory and the holder's pid and host. A lock whose holder died is free: the next run takes
    it over (logged). ``purpose`` ("rqa run", "training") is written into the lock file and shows
    up in that message. Not re-entrant: lock a directory once per process.
    """

    def __init__(self, directory: str | Path, purpose: str = "rqa run"):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, self.path)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise DirectoryInUseError(busy_message(self.directory, holder, self.path)) from None
            except LockUnsupportedError:
                os.close(fd)
                raise
            if _is_current(fd, self.path):
                break
            os.close(fd)  # its holder removed the file while we opened it: open the new one
        previous = _read_holder(fd)
        if previous:  # a released lock removes its file: this one's holder died holding it
            logger.warning(
                "%s: taking over the lock of a %s that ended without releasing it (pid %s on %s)",
                self.directory,
                previous.get("purpose", "run"),
                previous.get("pid"),
                previous.get("host"),
            )
        _write_holder(fd, self.purpose)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _is_current(fd, self.path):
                self.path.unlink()  # before unlocking: a waiter then sees a removed file, retries
        finally:
            os.close(fd)  # closing drops the lock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class WorkerLock:
    """The shared lock every training worker holds on the folder it writes, for as long as its
    process lives: ``with WorkerLock(output_dir): train(...)``. It outlives a killed driver as
    long as that driver's workers do, so a new run can wait for them (:meth:`wait_until_free`)
    instead of writing next to them."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / WORKERS_FILE
        self._fd: int | None = None

    def __enter__(self) -> WorkerLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        flock(self._fd, fcntl.LOCK_SH, self.path)  # waits only while a driver checks (a moment)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def wait_until_free(self, timeout_s: float = 30.0, every_s: float = 0.2) -> None:
        """Return once no worker holds the folder; a run's driver calls this before it starts
        workers. Raise :class:`DirectoryInUseError` if workers still hold it after
        ``timeout_s`` (workers of a killed run normally exit within a second)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline, waited = time.monotonic() + timeout_s, False
            while True:
                try:
                    flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, self.path)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DirectoryInUseError(
                            f"{self.directory}: training workers of an earlier run still write "
                            f"here ({_holders_text(self.path)}); stop them or wait for them"
                        ) from None
                    if not waited:
                        logger.info("%s: waiting for workers of an earlier run to exit", self.path)
                        waited = True
                    time.sleep(every_s)
        finally:
            os.close(fd)


def busy_message(directory: Path, holder: dict | None, path: Path) -> str:
    """One line: which directory, who holds it (pid, host, since when), what to do."""
    if not holder:
        return f"{directory} is in use by another run ({_holders_text(path)}); stop it or wait"
    pid, host = holder.get("pid"), holder.get("host")
    who = f"{holder.get('purpose', 'a run')} pid {pid} on {host}, started {holder.get('started')}"
    if host == socket.gethostname() and not still_running(holder):
        return (
            f"{directory} is in use: {who} has exited, but processes it started still hold "
            f"{path.name} ({_holders_text(path)}); stop them or wait for them"
        )
    return f"{directory} is in use by {who}; stop it or wait for it to finish"


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one a releasing holder removed)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_holder(fd: int) -> dict | None:
    try:
        raw = os.pread(fd, 4096, 0).decode()
        return json.loads(raw) if raw.strip() else None
    except (OSError, ValueError):
        return None


def _write_holder(fd: int, purpose: str) -> None:
    me = identity()
    holder = {
        **me,
        "purpose": purpose,
        "started": datetime.fromtimestamp(me["create_time"]).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def _holders_text(path: Path) -> str:
    """'pids 12, 13': the other local processes that have ``path`` open (or a hint if none)."""
    pids = []
    target = str(path.resolve())
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if any(f.path == target for f in process.open_files()):
                pids.append(process.pid)
        except psutil.Error:
            continue
    if not pids:
        return "held from another host, or by processes this user cannot see"
    return ("pid " if len(pids) == 1 else "pids ") + ", ".join(map(str, sorted(pids)))
