"""Numba's on-disk cache for bm25s's compiled search kernels.

bm25s compiles its numba kernels (top-k selection, the batch retrieve) in every process that
first searches, and asks numba for no cache: about 8 s on 2 cores, again in each Ray task that
mines BM25 negatives and in each evaluate stage. With numba's cache on, later processes load
the compiled code instead (0.2 s). Numba keeps the cache in ``__pycache__`` beside bm25s, else
in ``NUMBA_CACHE_DIR`` or the user's cache folder, and recompiles when bm25s's source changes;
where no folder is writable the kernels compile in each process as before.
"""

from __future__ import annotations

import importlib
import logging
import os

logger = logging.getLogger(__name__)

# the bm25s modules whose module-level kernels its numba backend calls
KERNEL_MODULES = ("bm25s.numba.selection", "bm25s.numba.retrieve_utils", "bm25s.scoring")


def cache_bm25s_kernels() -> None:
    """Turn numba's cache on for each kernel of KERNEL_MODULES; nothing to do when numba is not
    installed (bm25s then runs on numpy) or NUMBA_DISABLE_JIT is set."""
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    for name in KERNEL_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # another bm25s layout: its kernels compile uncached
            continue
        for kernel in vars(module).values():
            if isinstance(kernel, Dispatcher):
                _enable(kernel)


def _enable(kernel) -> None:
    try:
        kernel.enable_caching()
    except RuntimeError as err:  # numba found no writable cache folder
        logger.debug("bm25s kernel %s compiles uncached: %s", kernel.py_func.__name__, err)
