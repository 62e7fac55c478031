"""What a reader does about duplicate ids and ids that point nowhere: raise, or skip and count.

Holds the two policies (``on_duplicate``, ``on_unknown_id``) and their bookkeeping, nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Hashable, Iterator
from typing import Literal

from retrieval.tables.errors import DataError
from retrieval.tables.readers.lines import PathLike, shorten

log = logging.getLogger(__name__)

OnDuplicate = Literal["error", "keep_first"]
OnUnknownId = Literal["error", "skip"]


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Reject a misspelled policy up front instead of silently falling back to a default."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


class UniqueIds:
    """Remembers the ids seen in one file; a repeat either raises or is dropped (first one wins).

    Only the ids are held, so memory grows with the number of rows, not with their text.
    """

    def __init__(
        self,
        path: PathLike,
        field: str,
        on_duplicate: OnDuplicate = "error",
        ids: set | None = None,
        what: str = "id",
    ):
        check_choice("on_duplicate", on_duplicate, ("error", "keep_first"))
        self.path, self.field, self.policy, self.what = path, field, on_duplicate, what
        # The caller may pass its own set, to keep the ids for later checks without a second copy.
        self.ids: set[Hashable] = set() if ids is None else ids
        self.skipped = 0

    def is_new(self, key: Hashable, lineno: int | None) -> bool:
        """True the first time ``key`` is seen; False (row to be dropped) or DataError after."""
        if key not in self.ids:
            self.ids.add(key)
            return True
        if self.policy == "error":
            raise DataError(
                self.path,
                f"duplicate {self.what} {shorten(key)} "
                "(pass on_duplicate='keep_first' to keep the first)",
                line=lineno,
                field=self.field,
            )
        self.skipped += 1
        return False

    def report(self) -> None:
        if self.skipped:
            log.warning(
                "%s: dropped %d rows with a duplicate %s", self.path, self.skipped, self.field
            )


class KnownIds:
    """Checks that ids in one file refer to rows of another (qrels -> corpus, queries).

    ``known=None`` means the referenced table was not given, so nothing can be checked.
    """

    def __init__(
        self,
        path: PathLike,
        field: str,
        known: Collection[str] | None,
        on_unknown_id: OnUnknownId = "error",
        where: str = "",
    ):
        check_choice("on_unknown_id", on_unknown_id, ("error", "skip"))
        self.path, self.field, self.known, self.policy = path, field, known, on_unknown_id
        self.where = where
        self.skipped = 0

    def ok(self, value: str, lineno: int | None) -> bool:
        """True if ``value`` is known (or cannot be checked); False (skip the row) or DataError."""
        if self.known is None or value in self.known:
            return True
        if self.policy == "error":
            source = f" in {self.where}" if self.where else ""
            raise DataError(
                self.path,
                f"unknown id {shorten(value)}: not found{source} "
                "(pass on_unknown_id='skip' to drop such rows)",
                line=lineno,
                field=self.field,
            )
        self.skipped += 1
        return False

    def report(self) -> None:
        if self.skipped:
            log.warning(
                "%s: skipped %d rows with an unknown %s", self.path, self.skipped, self.field
            )


def collect_ids(rows: Iterator[dict], key: str, ids: set[str]) -> Iterator[dict]:
    """Pass rows through, adding ``row[key]`` to ``ids`` (e.g. the qids judged in a split)."""
    for row in rows:
        ids.add(row[key])
        yield row
