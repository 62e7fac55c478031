"""Labelled sentence-pair files: the STS Benchmark tsv and the senteval_cn ``.data`` layout.

- STS-B (``DIR/SPLIT.tsv``): tab-separated with a header naming at least ``score``,
  ``sentence1`` and ``sentence2`` (``split genre dataset year sid score sentence1 sentence2``);
  no quoting: sentences hold bare quote characters.
- senteval_cn (``DIR/SPLIT.data`` or ``DIR/*.SPLIT.data``; Chinese STS-B, LCQMC, ATEC, BQ,
  PAWSX): ``sentence1<TAB>sentence2<TAB>label``, no header; their dev split is named ``valid``.

Holds only reading and validation; encoding and scoring live in the evaluators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.errors import MissingInputError
from retrieval.tables.errors import DataError
from retrieval.tables.readers.lines import check_fields, empty_file, iter_lines, shorten

HEADER_FIELDS = ("score", "sentence1", "sentence2")
DATA_FIELDS = ("sentence1", "sentence2", "label")
# senteval_cn names its dev split "valid"; asking for "dev" finds it too.
SPLIT_ALIASES = {"dev": ("dev", "valid"), "valid": ("valid", "dev")}


@dataclass
class SentencePairs:
    """``n`` pairs ``(sentences1[i], sentences2[i])`` with a real label each, from ``path``."""

    sentences1: list[str]
    sentences2: list[str]
    labels: np.ndarray
    path: Path

    def __len__(self) -> int:
        return len(self.labels)


def find_pair_file(folder: str | Path, split: str) -> Path:
    """The one file of ``split`` in ``folder`` (or ``folder`` itself when it is a file)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    if not folder.is_dir():
        raise MissingInputError(f"{folder}: no such folder of sentence pairs")
    patterns = []
    for name in SPLIT_ALIASES.get(split, (split,)):
        patterns += [f"{name}.tsv", f"{name}.data", f"*.{name}.data"]
    found = list(
        dict.fromkeys(path for pattern in patterns for path in sorted(folder.glob(pattern)))
    )
    if not found:
        raise MissingInputError(
            f"{folder}: no file for split '{split}' (looked for {', '.join(patterns)})"
        )
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise MissingInputError(f"{folder}: several files for split '{split}': {names}")
    return found[0]


def _number(path: Path, lineno: int, field: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise DataError(path, f"not a number: {shorten(value)}", line=lineno, field=field) from None
    if not math.isfinite(number):
        raise DataError(path, f"not a finite number: {shorten(value)}", line=lineno, field=field)
    return number


def _sentence(path: Path, lineno: int, field: str, value: str) -> str:
    if not value.strip():
        raise DataError(path, "empty sentence", line=lineno, field=field)
    return value


def read_sentence_pairs(path: str | Path) -> SentencePairs:
    """Read an STS-B ``.tsv`` (header) or a senteval_cn file (anything else: no header)."""
    path = Path(path)
    first, second, labels = [], [], []
    names: tuple[str, ...] = DATA_FIELDS
    columns = {name: i for i, name in enumerate(DATA_FIELDS)}
    label_field = "label"
    needs_header = path.suffix == ".tsv"
    for lineno, line in iter_lines(path):
        fields = line.split("\t")
        if needs_header:
            needs_header = False
            missing = [name for name in HEADER_FIELDS if name not in fields]
            if missing:
                raise DataError(
                    path,
                    f"header must name {', '.join(HEADER_FIELDS)}; missing {', '.join(missing)}",
                    line=lineno,
                )
            names, label_field = tuple(fields), "score"
            columns = {name: fields.index(name) for name in HEADER_FIELDS}
            continue
        check_fields(path, lineno, fields, names)
        first.append(_sentence(path, lineno, "sentence1", fields[columns["sentence1"]]))
        second.append(_sentence(path, lineno, "sentence2", fields[columns["sentence2"]]))
        labels.append(_number(path, lineno, label_field, fields[columns[label_field]]))
    if not labels:
        raise empty_file(path, "sentence pairs")
    return SentencePairs(first, second, np.asarray(labels, dtype=np.float64), path)
