"""The dev queries an evaluation while training scores, drawn once with a private seeded
generator (the training's random streams are never drawn from), and their passages.

Cheap on any corpus: at most ``max_queries`` judged queries, and a pool of passages made of
their positives plus a candidates table's top ``depth`` of each, or, without one, the corpus
itself when it has at most ``pool_size`` passages, else a seeded sample of that many.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.errors import MissingInputError
from retrieval.tables.labels import read_qrels
from retrieval.tables.lookup import passages_of, queries_of
from retrieval.tables.store import iter_rows, read_table, table_exists


@dataclass
class DevQueries:
    """Sampled dev queries (sorted by qid), their texts and their qrels."""

    qids: list[str]
    texts: list[str]
    qrels: dict[str, dict[str, int]]

    def positives(self) -> set[str]:
        return {pid for q in self.qids for pid, rel in self.qrels[q].items() if rel > 0}


@dataclass
class Passages:
    """Passages by position: ids, titles (None where absent) and texts."""

    pids: list[str]
    titles: list[str | None]
    texts: list[str]


def sample_queries(tables: Path, split: str, max_queries: int, seed: int) -> DevQueries:
    """At most ``max_queries`` of the split's queries that have a relevant passage."""
    for name in (f"qrels-{split}", f"queries-{split}"):
        if not table_exists(tables / name):
            raise MissingInputError(f"{tables / name}: no such table for evaluation.split")
    qrels = read_qrels(tables / f"qrels-{split}")
    judged = sorted(q for q, rels in qrels.items() if any(rel > 0 for rel in rels.values()))
    if len(judged) > max_queries:
        rng = np.random.default_rng(seed)
        judged = sorted(rng.choice(judged, size=max_queries, replace=False).tolist())
    texts = queries_of(tables / f"queries-{split}", judged)
    missing = [q for q in judged if q not in texts]
    if missing:
        raise MissingInputError(f"{tables / f'queries-{split}'}: no text for qid {missing[0]}")
    return DevQueries(judged, [texts[q] for q in judged], {q: qrels[q] for q in judged})


def candidate_lists(path: Path, qids: list[str], depth: int) -> dict[str, list[str]]:
    """The top ``depth`` pids of each of ``qids`` in a candidates table (rank order)."""
    wanted, lists = set(qids), {}
    for row in iter_rows(path, columns=["qid", "pids"]):
        if row["qid"] in wanted:
            lists[row["qid"]] = row["pids"][:depth]
    return lists


def corpus_sample(corpus: Path, size: int, seed: int) -> list[str]:
    """Every pid of a corpus of at most ``size`` passages, else ``size`` of them, seeded."""
    pids = read_table(corpus, columns=["pid"])["pid"]
    if len(pids) <= size:
        return pids.to_pylist()
    rows = np.sort(np.random.default_rng(seed).choice(len(pids), size=size, replace=False))
    return pids.take(rows).to_pylist()


def load_passages(corpus: Path, pids: list[str]) -> Passages:
    """``pids`` (order kept, duplicates dropped) with their titles and texts."""
    pids = list(dict.fromkeys(pids))
    found = passages_of(corpus, pids)
    missing = [p for p in pids if p not in found]
    if missing:
        raise MissingInputError(f"{corpus}: no passage {missing[0]} (named by the dev set)")
    return Passages(pids, [found[p][0] for p in pids], [found[p][1] for p in pids])
