"""Streaming JSON readers: JSON Lines, and one big JSON list read record by record.

DPR's biencoder-nq-train.json is a single 7 GB list; ``json.load`` would need tens of GB of memory.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator

from retrieval.tables.errors import DataError
from retrieval.tables.readers.lines import (
    PathLike,
    decode_line,
    open_binary,
    require_id,
    shorten,
    strip_newline,
)

CHUNK_BYTES = 1 << 22


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file."""
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            text = strip_newline(decode_line(path, lineno, raw))
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(
                    path, f"broken JSON: {err.msg} (column {err.colno})", line=lineno
                ) from None
            if not isinstance(obj, dict):
                raise DataError(
                    path, f"expected a JSON object, got {type(obj).__name__}", line=lineno
                )
            yield lineno, obj


class _Buffer:
    """Decoded text of a file read in chunks, with the line number of any position in it."""

    def __init__(self, path: PathLike, f):
        self.path, self.f = path, f
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.text = ""
        self.eof = False
        self.bytes_lines = 1  # line number at the start of the next undecoded byte
        self.line_at = 1  # line number at position ``counted`` of ``text``
        self.counted = 0

    def line(self, pos: int) -> int:
        if pos >= self.counted:
            self.line_at += self.text.count("\n", self.counted, pos)
        else:
            self.line_at -= self.text.count("\n", pos, self.counted)
        self.counted = pos
        return self.line_at

    def more(self, keep_from: int, at_least: int | None = None) -> int:
        """Drop text before ``keep_from``, read another chunk; return the shift of positions."""
        self.line(keep_from)
        self.text = self.text[keep_from:]
        self.counted = 0
        raw = self.f.read(at_least or CHUNK_BYTES)
        self.eof = not raw
        try:
            self.text += self.decoder.decode(raw, final=self.eof)
        except UnicodeDecodeError as err:
            line = self.bytes_lines + err.object[: err.start].count(b"\n")
            byte = err.object[err.start]
            raise DataError(self.path, f"not valid UTF-8 (byte 0x{byte:02x})", line=line) from None
        self.bytes_lines += raw.count(b"\n")
        return keep_from

    def skip_space(self, pos: int) -> int:
        """Position of the next non-space character, reading more as needed (len(text) at EOF)."""
        while True:
            while pos < len(self.text) and self.text[pos] in " \t\r\n\ufeff":
                pos += 1
            if pos < len(self.text) or self.eof:
                return pos
            pos -= self.more(pos)


def _maybe_cut(err: json.JSONDecodeError, size: int) -> bool:
    """Could the error come from a record cut at the chunk's end rather than from bad JSON?

    A cut string reports where the string starts; any other cut (a literal, an escape, a
    missing delimiter) reports a position within a few characters of the end.
    """
    return err.msg.startswith("Unterminated string") or err.pos >= size - 8


def iter_json_array(path: PathLike) -> Iterator[tuple[int, int, object]]:
    """Yield ``(line_number, index, record)`` for each element of a top-level JSON list.

    Keeps one chunk plus the current record in memory, whatever the size of the file.
    """
    decoder = json.JSONDecoder()
    with open_binary(path) as f:
        buf = _Buffer(path, f)
        pos = buf.skip_space(0)
        if pos >= len(buf.text):
            raise DataError(path, "empty file: no JSON list")
        if buf.text[pos] != "[":
            raise DataError(path, "expected a JSON list of records", line=buf.line(pos))
        pos = buf.skip_space(pos + 1)
        index = 0
        while pos < len(buf.text) and buf.text[pos] != "]":
            try:
                record, end = decoder.raw_decode(buf.text, pos)
            except json.JSONDecodeError as err:
                if not buf.eof and _maybe_cut(err, len(buf.text)):
                    pos -= buf.more(pos, max(CHUNK_BYTES, len(buf.text) - pos))
                    continue
                raise DataError(
                    path, f"broken JSON in record {index}: {err.msg}", line=buf.line(err.pos)
                ) from None
            if end >= len(buf.text) and not buf.eof:  # a number may continue in the next chunk
                pos -= buf.more(pos)
                continue
            yield buf.line(pos), index, record
            index += 1
            pos = buf.skip_space(end)
            if pos < len(buf.text) and buf.text[pos] == ",":
                pos = buf.skip_space(pos + 1)
            elif pos < len(buf.text) and buf.text[pos] != "]":
                found = shorten(buf.text[pos : pos + 10])
                raise DataError(
                    path,
                    f"expected ',' or ']' after record {index - 1}, found {found}",
                    line=buf.line(pos),
                )
        if pos >= len(buf.text):
            raise DataError(
                path, "broken JSON: the list is not closed with ']'", line=buf.line(pos)
            )


def json_text(
    path: PathLike, lineno: int, obj: dict, key: str, required: bool = True, where: str = ""
) -> str:
    """A string field of a JSON record; an optional one that is absent or null reads as ""."""
    value = obj.get(key)
    if value is None:
        if required:
            raise DataError(path, f"missing{where}", line=lineno, field=key)
        return ""
    if not isinstance(value, str):
        raise DataError(
            path, f"expected a string, got {type(value).__name__}{where}", line=lineno, field=key
        )
    return value


def json_id(path: PathLike, lineno: int, obj: dict, key: str, where: str = "") -> str:
    """An id field of a JSON record: a non-empty string, or an integer turned into one."""
    if obj.get(key) is None:
        raise DataError(path, f"missing{where}", line=lineno, field=key)
    return require_id(path, lineno, key, obj[key])
