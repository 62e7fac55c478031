"""TREC text formats: run files (qid Q0 pid rank score tag) and qrels files (qid 0 pid rel).

Holds file reading and writing only; ranking order comes from order.py, scoring from evaluate.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from retrieval.metrics.order import trec_order
from retrieval.tables.errors import DataError

PathLike = str | os.PathLike[str]


def write_trec_run(
    run: Mapping[str, Mapping[str, float]],
    path: PathLike,
    tag: str = "rqa",
    depth: int | None = None,
) -> None:
    """Write ``{qid: {pid: score}}`` as ``qid Q0 pid rank score tag`` lines.

    Queries keep the run's order; within a query docs are in trec_eval's order (score desc,
    docid desc) with ranks from 1, and only the first ``depth`` are kept if given. Scores are
    written with ``repr(float)``, so reading the file back gives the same floats.
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth}")
    _check_token(tag, "tag")
    with open(path, "w", encoding="utf-8") as out:
        for qid, scores in run.items():
            _check_token(qid, "qid")
            for rank, pid in enumerate(trec_order(scores)[:depth], start=1):
                _check_token(pid, "pid")
                out.write(f"{qid} Q0 {pid} {rank} {float(scores[pid])!r} {tag}\n")


def read_trec_run(path: PathLike) -> dict[str, dict[str, float]]:
    """Read a TREC run file into ``{qid: {pid: score}}``; raise DataError on a bad or repeated line.

    The rank and tag columns are not kept: trec_eval too re-ranks by score.
    """
    run: dict[str, dict[str, float]] = {}
    for line_no, fields in _rows(path, 6, "qid Q0 pid rank score tag"):
        qid, _, pid, _, score, _ = fields
        try:
            value = float(score)
        except ValueError:
            raise DataError(path, f"score {score!r} is not a number", line_no, "score") from None
        scores = run.setdefault(qid, {})
        if pid in scores:
            raise DataError(path, f"doc {pid!r} appears twice for query {qid!r}", line_no, "pid")
        scores[pid] = value
    return run


def write_trec_qrels(qrels: Mapping[str, Mapping[str, int]], path: PathLike) -> None:
    """Write ``{qid: {pid: relevance}}`` as ``qid 0 pid relevance`` lines, in mapping order."""
    with open(path, "w", encoding="utf-8") as out:
        for qid, relevances in qrels.items():
            _check_token(qid, "qid")
            for pid, rel in relevances.items():
                _check_token(pid, "pid")
                out.write(f"{qid} 0 {pid} {int(rel)}\n")


def read_trec_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """Read a TREC qrels file (``qid iteration pid relevance``) into ``{qid: {pid: relevance}}``.

    Raises DataError on a malformed line or a (qid, pid) pair judged twice.
    """
    qrels: dict[str, dict[str, int]] = {}
    for line_no, fields in _rows(path, 4, "qid iteration pid relevance"):
        qid, _, pid, rel = fields
        try:
            value = int(rel)
        except ValueError:
            raise DataError(path, f"relevance {rel!r} is not an integer", line_no, "rel") from None
        judged = qrels.setdefault(qid, {})
        if pid in judged:
            raise DataError(path, f"doc {pid!r} judged twice for query {qid!r}", line_no, "pid")
        judged[pid] = value
    return qrels


def _rows(path: PathLike, width: int, layout: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each non-blank line, each checked to have ``width`` fields."""
    with open(path, encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != width:
                problem = f"expected {width} fields ({layout}), got {len(fields)}"
                raise DataError(path, problem, line_no)
            yield line_no, fields


def _check_token(value: str, what: str) -> None:
    if not value or value != value.strip() or len(value.split()) != 1:
        raise ValueError(f"{what} {value!r} must be non-empty and contain no whitespace")
