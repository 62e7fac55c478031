"""BEIR folders (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) to corpus, queries, qrels tables.

Also downloads a BEIR dataset zip; holds no retrieval or evaluation code.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

from retrieval.tables.errors import DataError
from retrieval.tables.readers.json_stream import iter_jsonl, json_id, json_text
from retrieval.tables.readers.lines import (
    PathLike,
    empty_file,
    iter_lines,
    parse_int,
    require_id,
    split_fields,
)
from retrieval.tables.readers.policies import (
    KnownIds,
    OnDuplicate,
    OnUnknownId,
    UniqueIds,
    collect_ids,
)
from retrieval.tables.readers.prepared import check_policies, prepared_tables
from retrieval.tables.schemas import CORPUS, QRELS, QUERIES
from retrieval.tables.store import DEFAULT_SHARD_ROWS

QRELS_HEADER = ("query-id", "corpus-id", "score")


def read_beir_corpus(
    path: PathLike, on_duplicate: OnDuplicate = "error", ids: set | None = None
) -> Iterator[dict]:
    """Stream ``{"pid", "title", "text"}`` rows from corpus.jsonl (a missing title reads as "").

    ``ids``, when given, is filled with the pids kept, for checking qrels afterwards.
    """
    unique = UniqueIds(path, "_id", on_duplicate, ids)
    rows = 0
    for lineno, obj in iter_jsonl(path):
        pid = json_id(path, lineno, obj, "_id")
        title = json_text(path, lineno, obj, "title", required=False)
        text = json_text(path, lineno, obj, "text")
        if unique.is_new(pid, lineno):
            rows += 1
            yield {"pid": pid, "title": title, "text": text}
    if not rows:
        raise empty_file(path, "documents")
    unique.report()


def read_beir_queries(
    path: PathLike, on_duplicate: OnDuplicate = "error", ids: set | None = None
) -> Iterator[dict]:
    """Stream ``{"qid", "text"}`` rows from queries.jsonl."""
    unique = UniqueIds(path, "_id", on_duplicate, ids)
    rows = 0
    for lineno, obj in iter_jsonl(path):
        qid = json_id(path, lineno, obj, "_id")
        text = json_text(path, lineno, obj, "text")
        if unique.is_new(qid, lineno):
            rows += 1
            yield {"qid": qid, "text": text}
    if not rows:
        raise empty_file(path, "queries")
    unique.report()


def read_beir_qrels(
    path: PathLike,
    on_duplicate: OnDuplicate = "error",
    query_ids: Collection[str] | None = None,
    corpus_ids: Collection[str] | None = None,
    on_unknown_id: OnUnknownId = "error",
) -> Iterator[dict]:
    """Stream ``{"qid", "pid", "relevance"}`` rows from a qrels tsv (LF or CRLF).

    Columns are found by their header names, so the header is required. Ids are checked
    against ``query_ids`` / ``corpus_ids`` when given; a repeated (query, doc) pair is a duplicate.
    """
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None:
        raise empty_file(path, "header")
    header_line, header_text = first
    header = header_text.split("\t")
    for name in QRELS_HEADER:
        if name not in header:
            raise DataError(
                path,
                f"missing column in header (expected {', '.join(QRELS_HEADER)})",
                line=header_line,
                field=name,
            )
    q_col, d_col, s_col = (header.index(name) for name in QRELS_HEADER)
    pairs = UniqueIds(path, "corpus-id", on_duplicate, what="judgment")
    known_q = KnownIds(path, "query-id", query_ids, on_unknown_id, "queries")
    known_d = KnownIds(path, "corpus-id", corpus_ids, on_unknown_id, "corpus")
    rows = 0
    for lineno, line in lines:
        fields = split_fields(path, lineno, line, header)
        qid = require_id(path, lineno, "query-id", fields[q_col])
        pid = require_id(path, lineno, "corpus-id", fields[d_col])
        relevance = parse_int(path, lineno, "score", fields[s_col])
        rows += 1
        if known_q.ok(qid, lineno) and known_d.ok(pid, lineno) and pairs.is_new((qid, pid), lineno):
            yield {"qid": qid, "pid": pid, "relevance": relevance}
    if not rows:
        raise empty_file(path, "judgments")
    for check in (pairs, known_q, known_d):
        check.report()


def beir_splits(folder: PathLike) -> list[str]:
    """The splits a BEIR folder has judgments for, from the names of ``qrels/*.tsv``."""
    qrels_dir = Path(folder) / "qrels"
    splits = sorted(p.stem for p in qrels_dir.glob("*.tsv"))
    if not splits:
        raise DataError(qrels_dir, "no qrels/{split}.tsv files found")
    return splits


def prepare_beir(
    folder: PathLike,
    out_dir: PathLike,
    splits: list[str] | None = None,
    on_duplicate: OnDuplicate = "error",
    on_unknown_id: OnUnknownId = "error",
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> dict[str, dict]:
    """Write ``corpus``, ``qrels-{split}`` and ``queries-{split}`` tables under ``out_dir``.

    ``queries-{split}`` holds only the queries judged in that split, so evaluation never scores
    a query that cannot count. Everything is written into one temporary folder that replaces
    ``out_dir`` at the end: on any error no table is left behind. Returns the manifests by name.
    """
    check_policies(on_duplicate, on_unknown_id)
    folder = Path(folder)
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    splits = beir_splits(folder) if splits is None else list(splits)
    qrels_paths = {split: folder / "qrels" / f"{split}.tsv" for split in splits}
    query_ids: set[str] = set()
    for _ in read_beir_queries(queries_path, on_duplicate, query_ids):
        pass  # validate the queries before writing anything; keep only their ids
    corpus_ids: set[str] = set()
    with prepared_tables(out_dir, shard_rows) as tables:
        corpus = read_beir_corpus(corpus_path, on_duplicate, corpus_ids)
        tables.write("corpus", corpus, CORPUS, corpus_path)
        judged: dict[str, set[str]] = {}
        for split, path in qrels_paths.items():
            judged[split] = set()
            rows = read_beir_qrels(path, on_duplicate, query_ids, corpus_ids, on_unknown_id)
            tables.write(f"qrels-{split}", collect_ids(rows, "qid", judged[split]), QRELS, path)
        for split in splits:
            rows = (
                row
                for row in read_beir_queries(queries_path, on_duplicate)
                if row["qid"] in judged[split]
            )
            tables.write(f"queries-{split}", rows, QUERIES, queries_path, split)
    return tables.manifests
