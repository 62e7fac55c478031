"""Random access to corpus passages by row number, memory-mapped through HF `datasets`.

Every worker opens the same Arrow cache, so the corpus is on disk once and paged in on demand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from datasets import Dataset

from retrieval.tables.store import shard_paths


class PassageStore:
    def __init__(self, corpus_dir: str | os.PathLike, cache_dir: str | os.PathLike):
        files = [str(p) for p in shard_paths(corpus_dir)]
        self.dataset = Dataset.from_parquet(files, cache_dir=str(cache_dir), keep_in_memory=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, rows: Sequence[int]) -> tuple[list[str], list[str]]:
        """Titles and texts of ``rows``, in the order asked."""
        batch = self.dataset[list(map(int, rows))]
        return batch["title"], batch["text"]
