"""Corpus titles drawn as pseudo-queries: augment's unlabeled queries and mine's title queries
for train_cross (``stages.augment.from_corpus``, ``stages.mine.title_queries``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.tables.store import iter_shards

MIN_WORDS = 4  # shorter titles ("Aspirin", "Tuberculosis") say too little to be a query


def drawn_titles(corpus: Path, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` (pid, title) pairs of passages whose title has 4+ words, drawn at random,
    in corpus order. Two passes over the title column, a shard at a time (count the eligible
    titles, then take the drawn ones), so a 21M-passage corpus's titles are never all in
    memory."""

    def eligible(shard) -> list[tuple[str, str]]:
        pairs = zip(shard["pid"].to_pylist(), shard["title"].to_pylist())
        return [(pid, t) for pid, t in pairs if t and len(t.split()) >= MIN_WORDS]

    total = sum(len(eligible(shard)) for shard in iter_shards(corpus, ["pid", "title"]))
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(total, size=min(count, total), replace=False))
    drawn, seen = [], 0
    for shard in iter_shards(corpus, ["pid", "title"]):
        candidates = eligible(shard)
        inside = picked[(picked >= seen) & (picked < seen + len(candidates))]
        drawn += [candidates[i - seen] for i in inside]
        seen += len(candidates)
    return drawn
