"""Running `rqa` as a user does, in a subprocess, for tests that kill it or need a fresh process.

Output goes to temporary files, not pipes: a test that polls a child it is about to kill never
reads a pipe, and a full pipe would stall the child.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rqa(*args: str) -> subprocess.Popen:
    return spawn([sys.executable, "-m", "pipelines.cli", *args])


def spawn(cmd: list[str]) -> subprocess.Popen:
    """Start ``cmd`` with its output in temporary files that :func:`finish` reads back."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
    proc.out_file, proc.err_file = out, err
    return proc


def finish(proc: subprocess.Popen, timeout_s: float = 900) -> str:
    """Wait for ``proc``; fail with the end of its stderr unless it exited 0; return stdout."""
    proc.wait(timeout=timeout_s)
    proc.err_file.seek(0)
    proc.out_file.seek(0)
    assert proc.returncode == 0, proc.err_file.read()[-4000:]
    return proc.out_file.read()


def kill_after_first_checkpoint(proc: subprocess.Popen, ckpt_dir: Path) -> None:
    """SIGKILL a training process as soon as its first checkpoint is complete."""
    deadline = time.time() + 300
    while not (ckpt_dir / "latest").is_file():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
