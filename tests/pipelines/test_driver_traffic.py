"""The driver's byte count: Arrow and NumPy results count their buffers, anything else its
pickle; each counted result adds to received_bytes."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa

from pipelines.driver_traffic import received, received_bytes, size_of


def test_sizes_and_the_running_count():
    table = pa.table({"x": np.arange(1000, dtype=np.int64)})
    scores, rows = np.zeros((4, 10), np.float32), np.zeros((4, 10), np.int64)
    pids = [["p"] * 10] * 4
    assert size_of(table) == 8000
    assert size_of((scores, rows, pids)) == 160 + 320 + len(pickle.dumps(pids, protocol=5))
    assert size_of({"a": 1}) == len(pickle.dumps({"a": 1}, protocol=5))
    before = received_bytes()
    assert received(table) is table
    assert received_bytes() - before == 8000
