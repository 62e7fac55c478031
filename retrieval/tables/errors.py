"""The one error type for bad input data.

Readers raise it so that a user sees a single line naming the file, the line and the field.
"""

from __future__ import annotations

from retrieval.errors import UserError


class DataError(UserError, ValueError):
    """Bad input: ``str(err)`` is one line, ``path:line: field: problem``."""

    def __init__(
        self, path: object, problem: str, line: int | None = None, field: str | None = None
    ):
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        what = problem if field is None else f"field '{field}': {problem}"
        super().__init__(f"{where}: {what}")
