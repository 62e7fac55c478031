"""DPR's Natural Questions files (biencoder json, psgs_w100.tsv, qa.csv) to tables.

Holds no answer matching: deciding whether a passage holds an answer belongs to evaluation.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from retrieval.tables.errors import DataError
from retrieval.tables.readers.json_stream import iter_json_array, json_id, json_text
from retrieval.tables.readers.lines import (
    PathLike,
    check_fields,
    empty_file,
    iter_csv_rows,
    require_id,
    shorten,
)
from retrieval.tables.readers.policies import (
    KnownIds,
    OnDuplicate,
    OnUnknownId,
    UniqueIds,
)
from retrieval.tables.readers.prepared import check_policies, prepared_tables
from retrieval.tables.schemas import ANSWERS, CORPUS, EXAMPLES, QUERIES
from retrieval.tables.store import DEFAULT_SHARD_ROWS

PASSAGE_COLUMNS = ("id", "text", "title")
CTX_KEYS = ("positive_ctxs", "hard_negative_ctxs", "negative_ctxs")


def read_dpr_passages(
    path: PathLike, on_duplicate: OnDuplicate = "error", ids: set | None = None
) -> Iterator[dict]:
    """Stream ``{"pid", "title", "text"}`` from psgs_w100.tsv (header ``id text title``)."""
    rows = iter_csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise empty_file(path, "header")
    header_line, header = first
    for name in PASSAGE_COLUMNS:
        if name not in header:
            raise DataError(
                path,
                f"missing column in header (expected {', '.join(PASSAGE_COLUMNS)})",
                line=header_line,
                field=name,
            )
    cols = [header.index(name) for name in PASSAGE_COLUMNS]
    unique = UniqueIds(path, "id", on_duplicate, ids)
    count = 0
    for lineno, fields in rows:
        check_fields(path, lineno, fields, header)
        pid, text, title = (fields[c] for c in cols)
        pid = require_id(path, lineno, "id", pid)
        if unique.is_new(pid, lineno):
            count += 1
            yield {"pid": pid, "title": title, "text": text}
    if not count:
        raise empty_file(path, "passages")
    unique.report()


def read_dpr_qa(path: PathLike, split: str) -> Iterator[dict]:
    """Stream ``{"qid", "text", "answers"}`` from a DPR qa.csv (``question<TAB>['answer', ...]``).

    The qid is ``{split}-{row}`` (row counted from 0), the order DPR's own result files use, so
    results can be lined up with theirs.
    """
    count = 0
    for lineno, fields in iter_csv_rows(path):
        check_fields(path, lineno, fields, ("question", "answers"))
        question, answers = fields
        if not question.strip():
            raise DataError(path, "empty question", line=lineno, field="question")
        yield {
            "qid": f"{split}-{count}",
            "text": question,
            "answers": _answers(path, lineno, answers),
        }
        count += 1
    if not count:
        raise empty_file(path, "questions")


def _answers(path: PathLike, lineno: int, value: str) -> list[str]:
    try:
        answers = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise DataError(
            path, f"not a Python list of strings: {shorten(value)}", line=lineno, field="answers"
        ) from None
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataError(
            path, f"not a list of strings: {shorten(value)}", line=lineno, field="answers"
        )
    return answers


@dataclass
class DprRecord:
    """One biencoder training record; ctxs are ``{"pid", "title", "text"}`` dicts."""

    line: int
    index: int
    question: str
    answers: list[str]
    positive_ctxs: list[dict]
    hard_negative_ctxs: list[dict]
    negative_ctxs: list[dict]

    def ctxs(self) -> Iterator[dict]:
        yield from self.positive_ctxs
        yield from self.hard_negative_ctxs
        yield from self.negative_ctxs


def read_dpr_biencoder(path: PathLike) -> Iterator[DprRecord]:
    """Stream the records of a DPR biencoder json list without loading the whole file."""
    count = 0
    for lineno, index, obj in iter_json_array(path):
        where = f" in record {index}"
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object{where}", line=lineno)
        question = json_text(path, lineno, obj, "question", where=where)
        answers = obj.get("answers", [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DataError(path, f"not a list of strings{where}", line=lineno, field="answers")
        ctxs = {key: _ctxs(path, lineno, obj, key, where) for key in CTX_KEYS}
        count += 1
        yield DprRecord(lineno, index, question, answers, **ctxs)
    if not count:
        raise empty_file(path, "records")


def _ctxs(path: PathLike, lineno: int, obj: dict, key: str, where: str) -> list[dict]:
    # Only positives are required: some DPR files (e.g. dev subsets) omit the negative lists.
    value = obj.get(key)
    if value is None and key != "positive_ctxs":
        return []
    if not isinstance(value, list):
        problem = "missing" if value is None else "expected a list"
        raise DataError(path, problem + where, line=lineno, field=key)
    ctxs = []
    for i, ctx in enumerate(value):
        field = f"{key}[{i}]"
        if not isinstance(ctx, dict):
            raise DataError(path, f"expected an object{where}", line=lineno, field=field)
        ctxs.append(
            {
                "pid": json_id(path, lineno, ctx, "passage_id", where=f"{where} ({field})"),
                "title": json_text(path, lineno, ctx, "title", required=False),
                "text": json_text(path, lineno, ctx, "text", where=f"{where} ({field})"),
            }
        )
    return ctxs


def biencoder_corpus(path: PathLike, seen: set[str]) -> Iterator[dict]:
    """Corpus rows of the passages in a biencoder file, each passage_id once (also across files)."""
    for record in read_dpr_biencoder(path):
        for ctx in record.ctxs():
            if ctx["pid"] not in seen:
                seen.add(ctx["pid"])
                yield ctx


def biencoder_examples(
    path: PathLike,
    split: str,
    qid_of_question: Mapping[str, str] | None = None,
    corpus_ids: Collection[str] | None = None,
    on_unknown_id: OnUnknownId = "error",
) -> Iterator[dict]:
    """Examples rows: positives = positive_ctxs; negatives = hard negatives, then the others.

    The qid is ``{split}-{index}``, or the qa.csv qid of the same question when
    ``qid_of_question`` is given. Negatives are de-duplicated and never repeat a positive.
    With ``on_unknown_id="skip"``, an unknown question drops the record and an unknown
    passage drops only that passage.
    """
    known_q = KnownIds(path, "question", qid_of_question, on_unknown_id, "qa.csv")
    known_p = KnownIds(path, "passage_id", corpus_ids, on_unknown_id, "passages")
    for record in read_dpr_biencoder(path):
        if qid_of_question is None:
            qid = f"{split}-{record.index}"
        elif known_q.ok(record.question, record.line):
            qid = qid_of_question[record.question]
        else:
            continue
        positives = _known_pids(record.positive_ctxs, known_p, record.line)
        negatives = _known_pids(
            record.hard_negative_ctxs + record.negative_ctxs, known_p, record.line
        )
        positive_set = set(positives)
        negatives = [pid for pid in negatives if pid not in positive_set]
        yield {"qid": qid, "query": record.question, "positives": positives, "negatives": negatives}
    known_q.report()
    known_p.report()


def _known_pids(ctxs: list[dict], known: KnownIds, lineno: int) -> list[str]:
    pids: dict[str, None] = {}  # ordered set
    for ctx in ctxs:
        if known.ok(ctx["pid"], lineno):
            pids[ctx["pid"]] = None
    return list(pids)


def biencoder_queries(path: PathLike, split: str) -> Iterator[dict]:
    """``{"qid", "text", "answers"}`` rows of a biencoder file, for splits with no qa.csv."""
    for record in read_dpr_biencoder(path):
        yield {"qid": f"{split}-{record.index}", "text": record.question, "answers": record.answers}


def prepare_nq(
    out_dir: PathLike,
    passages: PathLike | None = None,
    qa: Mapping[str, PathLike] | None = None,
    biencoder: Mapping[str, PathLike] | None = None,
    on_duplicate: OnDuplicate = "error",
    on_unknown_id: OnUnknownId = "error",
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> dict[str, dict]:
    """Write ``corpus``, ``queries-{split}``, ``answers-{split}`` and ``examples-{split}`` tables.

    The corpus is psgs_w100.tsv when given (and then every biencoder passage must be in it),
    otherwise the passages found in the biencoder files. Queries and answers come from qa.csv,
    or from the biencoder file for a split with no qa.csv. When a split has both, examples take
    the qa.csv qid of the same question text. All tables go into one temporary folder that
    replaces ``out_dir`` only when every table succeeded.
    """
    check_policies(on_duplicate, on_unknown_id)
    qa, biencoder = dict(qa or {}), dict(biencoder or {})
    qid_of_question: dict[str, dict[str, str]] = {}
    for split, path in qa.items():  # validate the small files first, keep question -> qid
        qid_of_question[split] = {}
        for row in read_dpr_qa(path, split):
            qid_of_question[split].setdefault(row["text"], row["qid"])
    with prepared_tables(out_dir, shard_rows) as tables:
        corpus_ids: set[str] | None = None
        if passages is not None:
            corpus_ids = set()
            tables.write("corpus", read_dpr_passages(passages, on_duplicate, corpus_ids), CORPUS,
                         passages)  # fmt: skip
        elif biencoder:
            seen: set[str] = set()
            rows = (row for path in biencoder.values() for row in biencoder_corpus(path, seen))
            tables.write("corpus", rows, CORPUS, ", ".join(str(p) for p in biencoder.values()))
        for split in sorted(set(qa) | set(biencoder)):
            if split in qa:
                path, make_rows = qa[split], read_dpr_qa
            else:
                path, make_rows = biencoder[split], biencoder_queries
            rows = _project(make_rows(path, split), QUERIES.names)
            tables.write(f"queries-{split}", rows, QUERIES, path, split)
            rows = _project(make_rows(path, split), ANSWERS.names)
            tables.write(f"answers-{split}", rows, ANSWERS, path, split)
            if split in biencoder:
                rows = biencoder_examples(
                    biencoder[split], split, qid_of_question.get(split), corpus_ids, on_unknown_id
                )
                tables.write(f"examples-{split}", rows, EXAMPLES, biencoder[split], split)
    return tables.manifests


def _project(rows: Iterator[dict], names: list[str]) -> Iterator[dict]:
    for row in rows:
        yield {name: row[name] for name in names}
