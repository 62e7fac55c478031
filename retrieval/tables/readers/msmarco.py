"""MS MARCO passage files (collection, queries, TREC or 2-column qrels, text triples) to tables.

Text triples carry no ids: their passages and queries get content-hash ids (see ``ids.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping

from retrieval.tables.errors import DataError
from retrieval.tables.readers.ids import text_digest, text_pid, text_qid
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
    check_choice,
    collect_ids,
)
from retrieval.tables.readers.prepared import check_policies, prepared_tables
from retrieval.tables.schemas import CORPUS, EXAMPLES, QRELS, QUERIES
from retrieval.tables.store import DEFAULT_SHARD_ROWS

log = logging.getLogger(__name__)

TRIPLE_FIELDS = ("query", "positive", "negative")


def read_msmarco_collection(
    path: PathLike, on_duplicate: OnDuplicate = "error", ids: set | None = None
) -> Iterator[dict]:
    """Stream ``{"pid", "title": "", "text"}`` rows from collection.tsv (``pid\\tpassage``)."""
    unique = UniqueIds(path, "pid", on_duplicate, ids)
    rows = 0
    for lineno, line in iter_lines(path):
        pid, text = split_fields(path, lineno, line, ("pid", "passage"))
        pid = require_id(path, lineno, "pid", pid)
        if unique.is_new(pid, lineno):
            rows += 1
            yield {"pid": pid, "title": "", "text": text}
    if not rows:
        raise empty_file(path, "passages")
    unique.report()


def read_msmarco_queries(
    path: PathLike, on_duplicate: OnDuplicate = "error", ids: set | None = None
) -> Iterator[dict]:
    """Stream ``{"qid", "text"}`` rows from queries.*.tsv (``qid\\ttext``; text kept verbatim)."""
    unique = UniqueIds(path, "qid", on_duplicate, ids)
    rows = 0
    for lineno, line in iter_lines(path):
        qid, text = split_fields(path, lineno, line, ("qid", "text"))
        qid = require_id(path, lineno, "qid", qid)
        if unique.is_new(qid, lineno):
            rows += 1
            yield {"qid": qid, "text": text}
    if not rows:
        raise empty_file(path, "queries")
    unique.report()


def read_msmarco_qrels(
    path: PathLike,
    on_duplicate: OnDuplicate = "error",
    query_ids: Collection[str] | None = None,
    corpus_ids: Collection[str] | None = None,
    on_unknown_id: OnUnknownId = "error",
) -> Iterator[dict]:
    """Stream ``{"qid", "pid", "relevance"}`` from TREC (``qid 0 pid rel``) or ``qid\\tpid`` qrels.

    Tabs and spaces both separate fields (anserini's copy uses spaces); the 2-column form means
    relevance 1. Line by line, so one file may even mix the two forms.
    """
    pairs = UniqueIds(path, "pid", on_duplicate, what="judgment")
    known_q = KnownIds(path, "qid", query_ids, on_unknown_id, "queries")
    known_d = KnownIds(path, "pid", corpus_ids, on_unknown_id, "collection")
    rows = 0
    for lineno, line in iter_lines(path):
        fields = line.split()
        if len(fields) == 4:
            qid, _, pid, relevance = fields
            relevance = parse_int(path, lineno, "relevance", relevance)
        elif len(fields) == 2:
            (qid, pid), relevance = fields, 1
        else:
            raise DataError(
                path,
                f"found {len(fields)} fields, expected 4 (qid 0 pid relevance) or 2 (qid pid)",
                line=lineno,
                field="relevance" if len(fields) == 3 else "pid",
            )
        rows += 1
        if known_q.ok(qid, lineno) and known_d.ok(pid, lineno) and pairs.is_new((qid, pid), lineno):
            yield {"qid": qid, "pid": pid, "relevance": relevance}
    if not rows:
        raise empty_file(path, "judgments")
    for check in (pairs, known_q, known_d):
        check.report()


def _triples(path: PathLike) -> Iterator[tuple[int, list[str]]]:
    rows = 0
    for lineno, line in iter_lines(path):
        fields = split_fields(path, lineno, line, TRIPLE_FIELDS)
        for name, value in zip(TRIPLE_FIELDS, fields):
            if not value.strip():
                raise DataError(path, "empty text", line=lineno, field=name)
        rows += 1
        yield lineno, fields
    if not rows:
        raise empty_file(path, "triples")


def read_msmarco_triples(
    path: PathLike,
    passage_ids: Mapping[str, str] | None = None,
    query_ids: Mapping[str, str] | None = None,
    on_unknown_id: OnUnknownId = "error",
) -> Iterator[dict]:
    """Stream examples ``{"qid", "query", "positives": [pid], "negatives": [pid]}``, one a line.

    Without ``passage_ids`` a passage's pid is ``text_pid(text)`` and its row comes from
    ``read_msmarco_triples_corpus``. With it (text digest -> collection pid) every passage must
    be in the collection, so the corpus never holds the same passage twice under two ids.
    ``query_ids`` (text digest -> qid) does the same for queries, else qid is ``text_qid``.
    """
    check_choice("on_unknown_id", on_unknown_id, ("error", "skip"))
    skipped = 0
    for lineno, (query, positive, negative) in _triples(path):
        qid = _lookup(path, lineno, "query", query, query_ids, text_qid, on_unknown_id)
        pos = _lookup(path, lineno, "positive", positive, passage_ids, text_pid, on_unknown_id)
        neg = _lookup(path, lineno, "negative", negative, passage_ids, text_pid, on_unknown_id)
        if qid is None or pos is None or neg is None:
            skipped += 1
            continue
        yield {"qid": qid, "query": query, "positives": [pos], "negatives": [neg]}
    if skipped:
        log.warning("%s: skipped %d triples with a text not found", path, skipped)


def _lookup(path, lineno, field, text, ids, make_id, on_unknown_id) -> str | None:
    if ids is None:
        return make_id(text)
    found = ids.get(text_digest(text))
    if found is None and on_unknown_id == "error":
        raise DataError(
            path,
            "text not found in the given collection/queries (pass on_unknown_id='skip')",
            line=lineno,
            field=field,
        )
    return found


def read_msmarco_triples_corpus(path: PathLike) -> Iterator[dict]:
    """Stream the corpus rows of the passages in a triples file, each distinct text once."""
    seen: set[str] = set()
    for _, (_, positive, negative) in _triples(path):
        for text in (positive, negative):
            pid = text_pid(text)
            if pid not in seen:
                seen.add(pid)
                yield {"pid": pid, "title": "", "text": text}


def prepare_msmarco(
    collection: PathLike | None,
    queries: Mapping[str, PathLike],
    qrels: Mapping[str, PathLike],
    out_dir: PathLike,
    triples: PathLike | None = None,
    on_duplicate: OnDuplicate = "error",
    on_unknown_id: OnUnknownId = "error",
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> dict[str, dict]:
    """Write ``corpus``, ``queries-{split}``, ``qrels-{split}`` and ``examples-train`` tables.

    A split with qrels keeps only its judged queries (as BEIR does). Without a collection the
    qrels pids cannot be checked and the corpus holds only the triples' passages, if any. Triples
    are linked to the collection and to ``queries["train"]`` by exact text when those are given
    (that holds a text digest per passage in memory, about 100 bytes each). All tables are
    written into one temporary folder that replaces ``out_dir`` only when all succeeded.
    """
    check_policies(on_duplicate, on_unknown_id)
    query_ids: dict[str, set[str]] = {}
    # Triples are linked to the train queries by text: digest -> qid, the first qid winning.
    train_texts = {} if triples is not None and "train" in queries else None
    for split, path in queries.items():  # validate the small files before writing anything
        query_ids[split] = set()
        for row in read_msmarco_queries(path, on_duplicate, query_ids[split]):
            if train_texts is not None and split == "train":
                train_texts.setdefault(text_digest(row["text"]), row["qid"])
    corpus_ids: set[str] | None = None
    passage_ids: dict[str, str] | None = None
    with prepared_tables(out_dir, shard_rows) as tables:
        if collection is not None:
            corpus_ids, passage_ids = set(), ({} if triples is not None else None)
            rows = _noting_digests(
                read_msmarco_collection(collection, on_duplicate, corpus_ids), passage_ids
            )
            tables.write("corpus", rows, CORPUS, collection)
        elif triples is not None:
            tables.write("corpus", read_msmarco_triples_corpus(triples), CORPUS, triples)
        judged: dict[str, set[str]] = {}
        for split, path in qrels.items():
            judged[split] = set()
            rows = read_msmarco_qrels(
                path, on_duplicate, query_ids.get(split), corpus_ids, on_unknown_id
            )
            tables.write(f"qrels-{split}", collect_ids(rows, "qid", judged[split]), QRELS, path)
        for split, path in queries.items():
            keep = judged.get(split)
            rows = (
                row
                for row in read_msmarco_queries(path, on_duplicate)
                if keep is None or row["qid"] in keep
            )
            tables.write(f"queries-{split}", rows, QUERIES, path, split)
        if triples is not None:
            rows = read_msmarco_triples(triples, passage_ids, train_texts, on_unknown_id)
            tables.write("examples-train", rows, EXAMPLES, triples)
    return tables.manifests


def _noting_digests(rows: Iterator[dict], digests: dict[str, str] | None) -> Iterator[dict]:
    for row in rows:
        if digests is not None:
            digests.setdefault(text_digest(row["text"]), row["pid"])
        yield row
