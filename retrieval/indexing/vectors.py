"""Checking search input and turning it (or Arrow vector columns) into float32 matrices for faiss.

Every check here raises a one-line ValueError that names the argument and what is wrong with it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FLOAT_TYPES = (pa.float32(), pa.float16())


def as_matrix(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 [n, dim] matrix, copying only when needed.

    faiss reads the raw buffer, so a float16/float64 or strided array must be converted here
    rather than silently misread; a wrong width is caught before faiss aborts on it.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d matrix [n, dim], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must hold floats, got dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} have dimension {x.shape[1]} but the index has dimension {dim}")
    return np.ascontiguousarray(x, dtype=np.float32)


def arrow_to_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Convert a ``fixed_size_list<float32|float16>[dim]`` column to a float32 [n, dim] matrix.

    Works on the flat value buffer (no per-row Python objects), which is what keeps reading a
    multi-million-row embeddings table fast.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if not pa.types.is_fixed_size_list(kind) or kind.value_type not in FLOAT_TYPES:
        raise ValueError(f"vector column is {kind}, expected fixed_size_list<float32|float16>[dim]")
    if column.null_count:
        raise ValueError(f"vector column has {column.null_count} null vectors")
    values = column.flatten()
    if values.null_count:
        raise ValueError(f"vector column has {values.null_count} null vector components")
    flat = values.to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(-1, kind.list_size), dtype=np.float32)


def check_k(k: int) -> None:
    """Reject a non-positive or non-integer ``k`` before faiss misreads it."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
