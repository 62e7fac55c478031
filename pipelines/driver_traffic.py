"""What the driver takes from Ray, counted: every result it gets from an actor or a task
(part entries from inference workers, top-k lists from corpus-split searchers, a task's return).

The data plane is meant to keep data off the driver (workers write their own parts); a stage's
manifest records how many bytes did reach it (``driver_received_mb``), and benchmarks/scale.py
compares that with what the stage produced. Sizes are Arrow/NumPy buffer sizes, else the pickle.
"""

from __future__ import annotations

import pickle
from typing import TypeVar

import numpy as np
import pyarrow as pa

T = TypeVar("T")
_received = [0]


def size_of(obj: object) -> int:
    if isinstance(obj, pa.Table | pa.RecordBatch | np.ndarray):
        return int(obj.nbytes)
    if (
        isinstance(obj, tuple | list)
        and obj
        and any(isinstance(o, pa.Table | np.ndarray) for o in obj)
    ):
        return sum(size_of(o) for o in obj)
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def received(obj: T) -> T:
    """Count ``obj`` (a result just taken from Ray) and return it."""
    _received[0] += size_of(obj)
    return obj


def received_bytes() -> int:
    """Bytes counted since this process started."""
    return _received[0]
