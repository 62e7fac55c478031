"""FaissIndex: any faiss ``index_factory`` index plus the passage ids stored next to its rows.

The index type is configuration (a factory string: "Flat", "HNSW32", "IVF256,PQ16x8", ...).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval.errors import ConfigError, MissingInputError
from retrieval.indexing.vectors import as_matrix, check_k
from retrieval.tables.store import atomic_dir, write_json_atomic

INDEX_FILE = "index.faiss"
PIDS_FILE = "pids.parquet"
META_FILE = "meta.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Metric:
    """A similarity: the faiss metric, and the sign that makes faiss's number "higher is better".

    faiss returns squared distances for L2 (smaller is better); negating them lets every caller,
    the shard merge included, rank by score descending whatever the metric.
    """

    faiss_metric: int
    sign: float


METRICS = {
    "ip": Metric(faiss.METRIC_INNER_PRODUCT, 1.0),
    "l2": Metric(faiss.METRIC_L2, -1.0),
}


def _metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {name!r}")
    return METRICS[name]


def _as_pids(pids: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Passage ids as one Arrow string array: compact (no Python object per id), Parquet-ready."""
    if isinstance(pids, pa.ChunkedArray):
        pids = pids.combine_chunks()
    try:
        if isinstance(pids, pa.Array):
            if not (pa.types.is_string(pids.type) or pa.types.is_large_string(pids.type)):
                raise TypeError(f"Arrow type {pids.type}")
            return pids.cast(pa.string())
        return pa.array(pids, type=pa.string())
    except (TypeError, pa.ArrowException) as err:
        raise ValueError(f"pids must be strings ({str(err).splitlines()[0]})") from None


def sample_rows(vectors: np.ndarray, size: int | None, seed: int = 0) -> np.ndarray:
    """A uniform random subset of ``size`` rows (all rows when ``size`` is None or too large).

    Training k-means/PQ on a sample is what keeps IVF training time independent of corpus size.
    """
    if size is None or size >= len(vectors):
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size, replace=False))
    return vectors[rows]


def _tie_at_cut(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Rows whose k-th score equals their last returned one: more rows may share that score."""
    return (ids[:, -1] >= 0) & (scores[:, -1] == scores[:, k - 1])


class FaissIndex:
    """A faiss index whose row ``i`` is the passage ``pids[i]``; scores are "higher is better".

    ``search`` always returns [nq, k] arrays: when fewer than ``k`` results exist (``k`` larger
    than the index, or an approximate index that visited too few lists) the tail is padded with
    score ``-inf`` and pid ``""``. Equal scores go to the lower row, at the k-th place too: faiss
    breaks such ties differently on its batched (BLAS) and single-query paths, so a query's result
    would otherwise depend on its batch. This is also what lets shard results merge exactly.

    Index types that train (IVF, PQ) are trained on a sample; for IVF-PQ add ``np`` to the PQ part
    of the factory ("IVF4096,PQ64x8np") to skip polysemous training, which costs minutes and
    only helps polysemous search.

    With ``use_gpu=True`` and a GPU build of faiss that sees GPUs, searches run on a copy of the
    index spread over all GPUs; ``add``/``train`` always update the CPU index (the copy is rebuilt
    on the next search) and ``save`` always writes the CPU index. Searches ask faiss for k + 1
    rows (to see ties at the cut), so on GPU builds that cap k at 2048 keep k below that.
    """

    def __init__(self, dim: int, factory: str = "Flat", metric: str = "ip", use_gpu: bool = False):
        if not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        measure = _metric(metric)
        try:
            index = faiss.index_factory(int(dim), factory, measure.faiss_metric)
        except RuntimeError:
            raise ConfigError(f"faiss index_factory does not understand {factory!r}") from None
        self._setup(index, factory, metric, use_gpu)

    def _setup(self, index: faiss.Index, factory: str, metric: str, use_gpu: bool) -> None:
        self.index = index
        self.factory = factory
        self.metric = metric
        self.use_gpu = use_gpu
        self.search_params: dict[str, float] = {}
        self._pid_chunks: list[pa.Array] = []
        self._pid_lookup: pa.Array | None = None
        self._gpu_index: faiss.Index | None = None

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        pids: Sequence[str] | pa.Array,
        factory: str = "Flat",
        metric: str = "ip",
        train_sample: int | None = None,
        seed: int = 0,
        use_gpu: bool = False,
    ) -> FaissIndex:
        """Create, train (on ``train_sample`` random rows, or all rows when None) and fill."""
        vectors = as_matrix(vectors, "vectors")
        if len(pids) != len(vectors):
            raise ValueError(f"got {len(pids)} pids for {len(vectors)} vectors")
        index = cls(vectors.shape[1], factory, metric, use_gpu)
        index.train(sample_rows(vectors, train_sample, seed))
        index.add(vectors, pids)
        return index

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def __len__(self) -> int:
        return self.index.ntotal

    def __repr__(self) -> str:
        return (
            f"FaissIndex({self.factory!r}, metric={self.metric!r}, dim={self.dim}, n={len(self)})"
        )

    @property
    def pids(self) -> list[str]:
        """All passage ids in row order."""
        return self._lookup().slice(0, len(self)).to_pylist()

    def train(self, vectors: np.ndarray) -> None:
        """Train the index (k-means, PQ codebooks, ...); a no-op for indexes that need none."""
        if self.is_trained:
            return
        vectors = as_matrix(vectors, "training vectors", self.dim)
        if len(vectors) == 0:
            raise ValueError(f"index {self.factory!r} needs training but got 0 training vectors")
        self.index.train(vectors)
        self._gpu_index = None

    def add(self, vectors: np.ndarray, pids: Sequence[str] | pa.Array) -> None:
        """Append vectors; ``pids[i]`` names ``vectors[i]``."""
        vectors = as_matrix(vectors, "vectors", self.dim)
        if len(pids) != len(vectors):
            raise ValueError(f"got {len(pids)} pids for {len(vectors)} vectors")
        if not self.is_trained:
            raise ValueError(f"index {self.factory!r} must be trained before add (use build/train)")
        pid_array = _as_pids(pids)
        self.index.add(vectors)
        self._pid_chunks.append(pid_array)
        self._pid_lookup = None
        self._gpu_index = None

    def set_search_params(self, **params: float) -> None:
        """Set search-time knobs such as ``nprobe=32`` or ``efSearch=128`` via faiss.ParameterSpace.

        ParameterSpace finds the right sub-index (inside pre-transforms, IVF quantizers, ...),
        so callers name the knob, not the index structure. Params are saved with the index.
        """
        space = faiss.ParameterSpace()
        for name, value in params.items():
            try:
                space.set_index_parameter(self.index, name, value)
            except RuntimeError:
                raise ValueError(
                    f"index {self.factory!r} has no search parameter {name!r}"
                ) from None
            self.search_params[name] = value
        self._gpu_index = None

    def search_ids(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query: (scores float32 [nq, k], row ids int64 [nq, k], -1 = none)."""
        check_k(k)
        queries = as_matrix(queries, "queries", self.dim)
        width = k + 1  # one extra row shows whether a tie crosses the cut
        scores, ids = self._ranked(queries, width)
        open_rows = np.flatnonzero(_tie_at_cut(scores, ids, k))
        while open_rows.size and width < len(self):
            width = min(2 * width, len(self))
            more_scores, more_ids = self._ranked(queries[open_rows], width)
            scores[open_rows], ids[open_rows] = more_scores[:, : k + 1], more_ids[:, : k + 1]
            open_rows = open_rows[_tie_at_cut(more_scores, more_ids, k)]
        return scores[:, :k], ids[:, :k]

    def _ranked(self, queries: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss results as higher-is-better scores, padding at -inf, ties by row ascending."""
        raw, ids = self._search_target().search(queries, width)
        scores = (raw * METRICS[self.metric].sign).astype(np.float32, copy=False)
        missing = ids < 0
        scores[missing] = -np.inf
        order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, ids), -scores), axis=1)
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` passages per query: (scores float32 [nq, k], pids [nq][k], padded with "")."""
        scores, ids = self.search_ids(queries, k)
        return scores, self.pids_of(ids).tolist()

    def pids_of(self, ids: np.ndarray) -> np.ndarray:
        """Passage ids (object array of str, same shape as ``ids``) for row ids; -1 maps to ""."""
        ids = np.asarray(ids, dtype=np.int64)
        lookup = self._lookup()
        rows = np.where(ids < 0, len(lookup) - 1, ids).ravel()
        return lookup.take(pa.array(rows)).to_numpy(zero_copy_only=False).reshape(ids.shape)

    def _lookup(self) -> pa.Array:
        """All pids plus a trailing "" that padding rows (-1) are redirected to."""
        if self._pid_lookup is None:
            chunks = [*self._pid_chunks, pa.array([""], type=pa.string())]
            self._pid_lookup = pa.concat_arrays(chunks)
        return self._pid_lookup

    def _search_target(self) -> faiss.Index:
        if not self.use_gpu or faiss.get_num_gpus() == 0:
            return self.index
        if self._gpu_index is None:
            options = faiss.GpuMultipleClonerOptions()
            options.shard = True  # split rows over GPUs instead of copying all to each
            try:
                gpu_index = faiss.index_cpu_to_all_gpus(self.index, co=options)
            except RuntimeError as err:
                warnings.warn(
                    f"{self!r} cannot move to GPU ({str(err).splitlines()[-1]}); searching on CPU",
                    stacklevel=3,
                )
                self.use_gpu = False
                return self.index
            space = faiss.GpuParameterSpace()
            for name, value in self.search_params.items():
                space.set_index_parameter(gpu_index, name, value)
            self._gpu_index = gpu_index
        return self._gpu_index

    def save(self, folder: str | os.PathLike) -> None:
        """Write index, pids and meta into ``folder``, atomically (it appears complete or not)."""
        with atomic_dir(folder) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            pq.write_table(pa.table({"pid": self._lookup().slice(0, len(self))}), tmp / PIDS_FILE)
            meta = {
                "format": FORMAT_VERSION,
                "factory": self.factory,
                "metric": self.metric,
                "dim": self.dim,
                "count": len(self),
                "search_params": self.search_params,
                "faiss_version": faiss.__version__,
            }
            write_json_atomic(tmp / META_FILE, meta)

    @classmethod
    def load(cls, folder: str | os.PathLike, use_gpu: bool = False) -> FaissIndex:
        """Read an index written by ``save``; checks that index, pids and meta agree."""
        folder = Path(folder)
        for name in (META_FILE, INDEX_FILE, PIDS_FILE):
            if not (folder / name).is_file():
                raise MissingInputError(f"{folder}: not a saved FaissIndex (missing {name})")
        meta = json.loads((folder / META_FILE).read_text())
        index = faiss.read_index(str(folder / INDEX_FILE))
        pids = pq.read_table(folder / PIDS_FILE, columns=["pid"]).column("pid").combine_chunks()
        if not index.ntotal == len(pids) == meta["count"]:
            raise ValueError(
                f"{folder}: index has {index.ntotal} rows, pids {len(pids)}, meta {meta['count']}"
            )
        if index.metric_type != _metric(meta["metric"]).faiss_metric:
            raise ValueError(f"{folder}: meta says metric {meta['metric']!r}, the index disagrees")
        loaded = cls.__new__(cls)
        loaded._setup(index, meta["factory"], meta["metric"], use_gpu)
        loaded._pid_chunks = [_as_pids(pids)]
        loaded.set_search_params(**meta.get("search_params", {}))
        return loaded
