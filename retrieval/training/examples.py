"""Training examples: built from qrels when a dataset has no examples table, and resolved to
corpus row numbers once, on the driver, so workers never hold a pid -> row map of the corpus.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.tables.errors import DataError
from retrieval.tables.schemas import EXAMPLES, TEACHER_SCORES
from retrieval.tables.store import read_table, table_exists, write_table

RESOLVED = pa.schema(
    [
        ("qid", pa.string()),
        ("query", pa.string()),
        ("positive_rows", pa.list_(pa.int64())),
        ("negative_rows", pa.list_(pa.int64())),
    ]
)

SCORED_RESOLVED = pa.schema([*RESOLVED, *TEACHER_SCORES])
SCORED_LISTS = {"positive_scores": "positives", "negative_scores": "negatives"}


def examples_from_qrels(tables_dir: str | os.PathLike, split: str) -> pa.Table:
    """One example per judged query: positives = pids with relevance > 0, no negatives."""
    tables_dir = Path(tables_dir)
    qrels = read_table(tables_dir / f"qrels-{split}")
    qrels = qrels.filter(pc.greater(qrels["relevance"], 0))
    queries = read_table(tables_dir / f"queries-{split}")
    text_of = dict(zip(queries["qid"].to_pylist(), queries["text"].to_pylist()))
    positives: dict[str, list[str]] = {}
    for qid, pid in zip(qrels["qid"].to_pylist(), qrels["pid"].to_pylist()):
        positives.setdefault(qid, []).append(pid)
    rows = [
        {"qid": qid, "query": text_of[qid], "positives": pids, "negatives": []}
        for qid, pids in positives.items()
    ]
    return pa.Table.from_pylist(rows, schema=EXAMPLES)


def load_examples(tables_dir: Path, split: str, examples: Path | None) -> pa.Table:
    if examples is not None:
        return read_table(examples)
    if table_exists(tables_dir / f"examples-{split}"):
        return read_table(tables_dir / f"examples-{split}")
    return examples_from_qrels(tables_dir, split)


def _rows(values: pa.ChunkedArray, corpus_pids: pa.Array, where: str) -> pa.Array:
    """Map a list<pid> column to list<row>; an unknown pid is a one-line DataError."""
    lists = values.combine_chunks()
    flat = pc.index_in(lists.flatten(), value_set=corpus_pids)
    if flat.null_count:
        missing = lists.flatten().filter(pc.is_null(flat))[0].as_py()
        raise DataError(where, f"pid '{missing}' is not in the corpus", field="pids")
    return pa.ListArray.from_arrays(lists.offsets, flat.cast(pa.int64()))


def check_teacher_scores(examples: pa.Table, source: str) -> None:
    """One teacher score per positive and per negative of every example, or a one-line error
    (losses margin_mse and listwise_ce_kl distil them; NaN: no score, left to the CE)."""
    names = list(SCORED_LISTS)
    if not set(names) <= set(examples.column_names):
        raise DataError(
            source,
            "has no teacher scores (positive_scores, negative_scores), which the loss distils "
            "(margin_mse: denoise writes them; listwise_ce_kl: train_cross adds the retriever's)",
        )
    for name, passages in SCORED_LISTS.items():
        lengths = pc.fill_null(pc.list_value_length(examples[name]), -1)
        wrong = pc.not_equal(lengths, pc.list_value_length(examples[passages]))
        if pc.any(wrong).as_py() or pc.list_flatten(examples[name]).null_count:
            raise DataError(source, f"a score missing for some of the {passages}", field=name)


def resolve_examples(
    examples: pa.Table, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, source: str,
    teacher_scores: bool = False,
) -> dict:  # fmt: skip
    """Write examples with corpus row numbers instead of pids; returns the table's manifest.
    ``teacher_scores``: carry each passage's teacher score along (required then)."""
    corpus_pids = read_table(corpus_dir, columns=["pid"])["pid"].combine_chunks()
    if teacher_scores:
        check_teacher_scores(examples, source)
    no_positive = pc.equal(pc.list_value_length(examples["positives"]), 0)
    examples = examples.filter(pc.invert(no_positive))
    if examples.num_rows == 0:
        raise DataError(source, "no example has a positive passage", field="positives")
    columns = {
        "qid": examples["qid"],
        "query": examples["query"],
        "positive_rows": _rows(examples["positives"], corpus_pids, source),
        "negative_rows": _rows(examples["negatives"], corpus_pids, source),
    }
    schema = RESOLVED
    if teacher_scores:
        columns.update({name: examples[name] for name in SCORED_LISTS})
        schema = SCORED_RESOLVED
    return write_table(out_dir, pa.table(columns, schema=schema), schema, meta={"source": source})


class ResolvedExamples:
    """Examples as Python lists of corpus rows, small enough to hold in every worker."""

    def __init__(self, table_dir: str | os.PathLike):
        table = read_table(table_dir)
        self.qids: list[str] = table["qid"].to_pylist()
        self.queries: list[str] = table["query"].to_pylist()
        self.positives = [np.asarray(r, dtype=np.int64) for r in table["positive_rows"].to_pylist()]
        self.negatives = [np.asarray(r, dtype=np.int64) for r in table["negative_rows"].to_pylist()]
        # the teacher's score of each positive and negative (margin_mse, listwise_ce_kl), else None
        self.positive_scores = self.negative_scores = None
        if "positive_scores" in table.column_names:
            self.positive_scores = _float_lists(table["positive_scores"])
            self.negative_scores = _float_lists(table["negative_scores"])

    def __len__(self) -> int:
        return len(self.queries)

    def known_positives(self, i: int) -> np.ndarray:
        """Every positive row known for example ``i``'s query: its own, and those of other
        examples with the same qid (a query may come in several rows, e.g. from two tables)."""
        return self._shared_qid_positives.get(self.qids[i], self.positives[i])

    @functools.cached_property
    def _shared_qid_positives(self) -> dict[str, np.ndarray]:
        """The union of positives of each qid that more than one example has."""
        by_qid: dict[str, list[np.ndarray]] = {}
        for qid, rows in zip(self.qids, self.positives):
            by_qid.setdefault(qid, []).append(rows)
        return {q: np.unique(np.concatenate(r)) for q, r in by_qid.items() if len(r) > 1}


def _float_lists(column: pa.ChunkedArray) -> list[np.ndarray]:
    return [np.asarray(r, dtype=np.float32) for r in column.to_pylist()]
