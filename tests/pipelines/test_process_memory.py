"""The memory sampler behind each stage's peak memory counts the processes the driver starts
(Ray workers, subprocesses), not only the driver."""

import subprocess
import sys

from pipelines.process_memory import PeakMemory

MB = 2**20
HOLDS_300_MB = (
    "import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(1)"
)


def test_peak_counts_a_child_process_and_driver_peak_only_this_one():
    with PeakMemory(every_s=0.05) as memory:
        subprocess.run([sys.executable, "-c", HOLDS_300_MB], check=True)
    assert memory.peak >= memory.driver_peak + 280 * MB  # the child's 300 MB were seen
    assert 0 < memory.driver_peak < memory.peak
