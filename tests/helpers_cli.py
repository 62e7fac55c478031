"""Running `rqa` as a user does, in a subprocess, for tests that kill it or need a fresh process.

Output goes to temporary files, not pipes: a test that polls a child it is about to kill never
reads a pipe, and a full pipe would stall the child.
"""

import subprocess
import sys
import tempfile


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
