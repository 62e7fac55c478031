"""Assertions shared by the reader tests: what a DataError must say, and writing broken files.

Test helpers only; the real data they break comes from the excerpts in tests/data/fixtures.
"""

from __future__ import annotations

from pathlib import Path

from retrieval.tables import DataError


def check_error(err: DataError, path: Path, line: int | None, field: str | None = None) -> None:
    """The error is one line naming the file, the line and (when known) the field."""
    message = str(err)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(str(path)), message
    assert err.line == line, message
    if line is not None:
        assert message.startswith(f"{path}:{line}: "), message
    if field is not None:
        assert err.field == field, message
        assert f"field '{field}'" in message, message


def head_lines(path: Path, count: int) -> list[bytes]:
    """The first ``count`` lines of a real file, bytes kept exactly (line endings included)."""
    lines = []
    with open(path, "rb") as f:
        for raw in f:
            if len(lines) == count:
                break
            lines.append(raw)
    return lines


def write_lines(path: Path, lines: list[bytes | str]) -> Path:
    """Write lines (each ending in ``\\n`` unless it already ends in one) as raw bytes."""
    data = b""
    for line in lines:
        raw = line.encode("utf-8") if isinstance(line, str) else line
        data += raw if raw.endswith(b"\n") else raw + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
