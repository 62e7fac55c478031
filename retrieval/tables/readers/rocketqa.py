"""RocketQA's tsv files (dual and cross training files, passage lists, query lists) to tables.

These files carry no ids, so every passage and query gets a content-hash id (see ``ids.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

from retrieval.tables.errors import DataError
from retrieval.tables.readers.ids import text_pid, text_qid
from retrieval.tables.readers.lines import (
    PathLike,
    empty_file,
    iter_lines,
    parse_int,
    split_fields,
)
from retrieval.tables.readers.prepared import prepared_tables
from retrieval.tables.schemas import CORPUS, EXAMPLES, QUERIES
from retrieval.tables.store import DEFAULT_SHARD_ROWS

# Why hashes and not line numbers: the same query or passage then has the same id in the query
# list, the candidate list and the training files, so their tables join without a lookup. Ids
# are content addresses, so a repeated line is the same row again: it is dropped, never an error.
DUAL_FIELDS = ("query", "title_pos", "para_pos", "title_neg", "para_neg", "label")
CROSS_FIELDS = ("query", "title", "para", "label")
PASSAGE_FIELDS = ("title", "passage")
NO_TITLE = "-"


def _title(value: str) -> str:
    return "" if value in ("", NO_TITLE) else value


def _passage(path: PathLike, lineno: int, field: str, title: str, text: str) -> dict:
    if not text.strip():
        raise DataError(path, "empty passage", line=lineno, field=field)
    title = _title(title)
    return {"pid": text_pid(text, title), "title": title, "text": text}


def _query(path: PathLike, lineno: int, text: str) -> str:
    if not text.strip():
        raise DataError(path, "empty query", line=lineno, field="query")
    return text


def read_rocketqa_passages(path: PathLike, seen: set[str] | None = None) -> Iterator[dict]:
    """Stream ``{"pid", "title", "text"}`` from a ``title\\tpassage`` file (``-``: no title).

    ``seen`` (pids already written) lets several files share one corpus without repeats.
    """
    seen = set() if seen is None else seen
    count = 0
    for lineno, line in iter_lines(path):
        title, text = split_fields(path, lineno, line, PASSAGE_FIELDS)
        row = _passage(path, lineno, "passage", title, text)
        count += 1
        if row["pid"] not in seen:
            seen.add(row["pid"])
            yield row
    if not count:
        raise empty_file(path, "passages")


def read_rocketqa_queries(path: PathLike) -> Iterator[dict]:
    """Stream ``{"qid", "text"}`` from a query list: one query a line, or RocketQA's test form
    ``query\\t-\\t-\\t0`` (the query is the first field)."""
    seen: set[str] = set()
    count = 0
    for lineno, line in iter_lines(path):
        fields = line.split("\t")
        if len(fields) not in (1, 4):
            raise DataError(
                path,
                f"found {len(fields)} fields, expected 1 (query) or 4 (query - - 0)",
                line=lineno,
                field="query",
            )
        text = _query(path, lineno, fields[0])
        count += 1
        qid = text_qid(text)
        if qid not in seen:
            seen.add(qid)
            yield {"qid": qid, "text": text}
    if not count:
        raise empty_file(path, "queries")


def _dual_lines(path: PathLike) -> Iterator[tuple[int, list[str]]]:
    count = 0
    for lineno, line in iter_lines(path):
        fields = split_fields(path, lineno, line, DUAL_FIELDS)
        parse_int(path, lineno, "label", fields[5])  # unused by training, but must be well formed
        count += 1
        yield lineno, fields
    if not count:
        raise empty_file(path, "training lines")


def _cross_lines(path: PathLike) -> Iterator[tuple[int, list[str], int]]:
    count = 0
    for lineno, line in iter_lines(path):
        fields = split_fields(path, lineno, line, CROSS_FIELDS)
        label = parse_int(path, lineno, "label", fields[3])
        count += 1
        yield lineno, fields, label
    if not count:
        raise empty_file(path, "training lines")


def read_rocketqa_dual(path: PathLike) -> Iterator[dict]:
    """Examples from a dual training file: one row a line, ``positives=[pos]``, ``negatives=[neg]``.

    One row per line keeps RocketQA's own sampling (the same query appears on many lines).
    """
    for lineno, (query, t_pos, p_pos, t_neg, p_neg, _) in _dual_lines(path):
        query = _query(path, lineno, query)
        positive = _passage(path, lineno, "para_pos", t_pos, p_pos)["pid"]
        negative = _passage(path, lineno, "para_neg", t_neg, p_neg)["pid"]
        yield {
            "qid": text_qid(query),
            "query": query,
            "positives": [positive],
            "negatives": [negative],
        }


def read_rocketqa_cross(path: PathLike) -> Iterator[dict]:
    """Examples from a cross training file: consecutive lines of one query make one row.

    Lines are pointwise (query, passage, label); label > 0 makes the passage a positive,
    label 0 a negative. A line alone is not an example, the group of its query is.
    """
    group: dict | None = None
    for lineno, (query, title, para, _), label in _cross_lines(path):
        query = _query(path, lineno, query)
        pid = _passage(path, lineno, "para", title, para)["pid"]
        if group is None or group["query"] != query:
            if group is not None:
                yield group
            group = {"qid": text_qid(query), "query": query, "positives": [], "negatives": []}
        target = group["positives"] if label > 0 else group["negatives"]
        if pid not in target:
            target.append(pid)
    if group is not None:
        yield group


def read_rocketqa_training_passages(
    path: PathLike, kind: str, seen: set[str] | None = None
) -> Iterator[dict]:
    """Corpus rows of the passages in a ``kind="dual"`` or ``"cross"`` training file."""
    seen = set() if seen is None else seen
    if kind == "dual":
        items = (
            (lineno, [("para_pos", f[1], f[2]), ("para_neg", f[3], f[4])])
            for lineno, f in _dual_lines(path)
        )
    elif kind == "cross":
        items = ((lineno, [("para", f[1], f[2])]) for lineno, f, _ in _cross_lines(path))
    else:
        raise ValueError(f"kind must be 'dual' or 'cross', got {kind!r}")
    for lineno, passages in items:
        for field, title, text in passages:
            row = _passage(path, lineno, field, title, text)
            if row["pid"] not in seen:
                seen.add(row["pid"])
                yield row


def prepare_rocketqa(
    out_dir: PathLike,
    passages: Iterable[PathLike] = (),
    queries: Mapping[str, PathLike] | None = None,
    dual_train: PathLike | None = None,
    cross_train: PathLike | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> dict[str, dict]:
    """Write ``corpus``, ``queries-{split}``, ``examples-train`` (dual) and
    ``examples-cross-train`` (cross) tables.

    The corpus holds the passages of the passage files and of the training files, each once,
    so every pid in the examples resolves. All tables go into one temporary folder that replaces
    ``out_dir`` only when every table succeeded.
    """
    passages = [passages] if isinstance(passages, str | os.PathLike) else list(passages)
    queries = dict(queries or {})
    training = [
        (path, kind) for path, kind in ((dual_train, "dual"), (cross_train, "cross")) if path
    ]
    with prepared_tables(out_dir, shard_rows) as tables:
        if passages or training:
            seen: set[str] = set()
            rows = _chain(
                [read_rocketqa_passages(path, seen) for path in passages]
                + [read_rocketqa_training_passages(path, kind, seen) for path, kind in training]
            )
            sources = [str(p) for p in passages] + [str(path) for path, _ in training]
            tables.write("corpus", rows, CORPUS, ", ".join(sources))
        for split, path in queries.items():
            tables.write(f"queries-{split}", read_rocketqa_queries(path), QUERIES, path, split)
        for path, kind in training:
            name = "examples-train" if kind == "dual" else "examples-cross-train"
            reader = read_rocketqa_dual if kind == "dual" else read_rocketqa_cross
            tables.write(name, reader(path), EXAMPLES, path)
    return tables.manifests


def _chain(iterators: list[Iterator[dict]]) -> Iterator[dict]:
    for rows in iterators:
        yield from rows
