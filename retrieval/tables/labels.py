"""A split's relevance labels as the tables hold them: qrels (graded judgements), answers
(NQ-style answer strings) and the passage bodies answers are matched in. Evaluation, mining and
BM25 all read labels through here."""

from __future__ import annotations

import os
from pathlib import Path

from retrieval.errors import MissingInputError
from retrieval.tables.lookup import passages_of
from retrieval.tables.store import read_table, table_exists


def read_qrels(table_dir: str | os.PathLike) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    table = read_table(table_dir)
    for qid, pid, rel in zip(*(table[c].to_pylist() for c in ("qid", "pid", "relevance"))):
        qrels.setdefault(qid, {})[pid] = rel
    return qrels


def read_answers(table_dir: str | os.PathLike) -> dict[str, list[str]]:
    table = read_table(table_dir)
    return dict(zip(table["qid"].to_pylist(), table["answers"].to_pylist()))


def body_texts(corpus_dir: Path, pids: set[str]) -> dict[str, str]:
    """Body texts of just the ``pids`` asked for, read shard by shard to keep memory small.

    Titles are left out: DPR's answer check (qa_validation.check_answer) looks at the passage
    body only, so an answer found only in a title must not count as a hit.
    """
    return {pid: text for pid, (_, text) in passages_of(corpus_dir, pids).items()}


def check_labels(tables_dir: Path, split: str) -> tuple[bool, bool]:
    """Whether ``split`` has qrels and answers; at least one of them must be there."""
    has_qrels = table_exists(tables_dir / f"qrels-{split}")
    has_answers = table_exists(tables_dir / f"answers-{split}")
    if not (has_qrels or has_answers):
        raise MissingInputError(f"{tables_dir}: no qrels-{split} or answers-{split} table")
    return has_qrels, has_answers
