"""Line-level reading of raw text files: exact 1-based line numbers, strict UTF-8, field splitting.

Holds only format-neutral helpers; what a line means belongs to the per-format reader modules.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence

from retrieval.tables.errors import DataError

PathLike = str | os.PathLike


def shorten(value: object, limit: int = 60) -> str:
    """``repr`` of a value cut to ``limit`` characters: keeps error messages on one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_binary(path: PathLike):
    """Open a file for reading, turning a missing file into a one-line DataError."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, expected a file") from None


def decode_line(path: PathLike, lineno: int, raw: bytes) -> str:
    """Decode strictly, so a stray Latin-1 byte is reported where it is, not turned to mojibake."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        byte = raw[err.start]
        raise DataError(
            path, f"not valid UTF-8 (byte 0x{byte:02x} at column {err.start + 1})", line=lineno
        ) from None


def iter_raw_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` with line endings kept (for the csv module).

    Splits on ``\\n`` only: ``str.splitlines`` would also split on U+2028 or U+0085 inside a
    passage and shift every later line number.
    """
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            text = decode_line(path, lineno, raw)
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield lineno, text


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every non-blank line, without its ``\\n`` or ``\\r\\n``.

    Other whitespace is kept: MS MARCO has genuine leading spaces in queries (qid 2).
    """
    for lineno, text in iter_raw_lines(path):
        text = strip_newline(text)
        if text:
            yield lineno, text


def strip_newline(text: str) -> str:
    """Remove one trailing ``\\n`` (LF) or ``\\r\\n`` (CRLF)."""
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text


def split_fields(
    path: PathLike, lineno: int, line: str, names: Sequence[str], sep: str | None = "\t"
) -> list[str]:
    """Split a line into exactly ``len(names)`` fields (``sep=None``: runs of whitespace)."""
    fields = line.split(sep)
    check_fields(path, lineno, fields, names)
    return fields


def check_fields(path: PathLike, lineno: int, fields: Sequence[str], names: Sequence[str]) -> None:
    """Require exactly ``len(names)`` fields, naming the first missing one on error."""
    if len(fields) < len(names):
        raise DataError(
            path,
            f"missing: found {len(fields)} of {len(names)} fields ({', '.join(names)})",
            line=lineno,
            field=names[len(fields)],
        )
    if len(fields) > len(names):
        raise DataError(
            path,
            f"unexpected extra field: found {len(fields)} fields, expected {len(names)} "
            f"({', '.join(names)})",
            line=lineno,
            field=f"#{len(names) + 1}",
        )


def parse_int(path: PathLike, lineno: int, field: str, value: str) -> int:
    """Parse a relevance label as an int32, the type of ``qrels.relevance``."""
    try:
        number = int(value.strip())
    except ValueError:
        raise DataError(
            path, f"not an integer: {shorten(value)}", line=lineno, field=field
        ) from None
    if not -(2**31) <= number < 2**31:
        raise DataError(path, f"out of int32 range: {number}", line=lineno, field=field)
    return number


def require_id(path: PathLike, lineno: int, field: str, value: object) -> str:
    """Ids are non-empty strings; JSON integers are accepted and turned into strings."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(
            path, f"id must be a string, got {type(value).__name__}", line=lineno, field=field
        )
    text = str(value)
    if not text.strip():
        raise DataError(path, "empty id", line=lineno, field=field)
    return text


def empty_file(path: PathLike, what: str = "data rows") -> DataError:
    """The error for a file that holds nothing to read: an empty table is never what was meant."""
    return DataError(path, f"empty file: no {what}")


def iter_csv_rows(path: PathLike, delimiter: str = "\t") -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` of a csv-quoted file (DPR's qa.csv and psgs_w100.tsv).

    Quoted fields may hold doubled quotes (``""Destiny 's Child""``); the line number is the
    one where the record starts. Blank lines are skipped.
    """
    where = {"line": 0}

    def numbered() -> Iterator[str]:
        for lineno, text in iter_raw_lines(path):
            where["line"] = lineno
            yield text

    reader = csv.reader(numbered(), delimiter=delimiter)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(path, f"bad CSV quoting: {err}", line=start) from None
        if fields:
            yield start, fields
        start = where["line"] + 1
