"""Stable ids for passages and queries that a format gives only as text (triples, RocketQA tsv).

Content-addressed: the same text gets the same id in every file and every run, on any machine.
"""

from __future__ import annotations

import hashlib

# 16 hex digits = 64 bits: a collision among 10^8 texts has probability below 10^-3.
DIGITS = 16


def text_digest(text: str) -> str:
    """The hex digest that text ids are built from (also used to match text to a collection)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:DIGITS]


def text_pid(text: str, title: str = "") -> str:
    """Passage id ``h`` + digest; the title takes part only when there is one.

    An untitled passage therefore gets the same id whether it came from MS MARCO triples or from
    a RocketQA file with ``-`` as its title.
    """
    return "h" + text_digest(f"{title}\t{text}" if title else text)


def text_qid(text: str) -> str:
    """Query id ``q`` + digest of the query text (a different prefix, so never equal to a pid)."""
    return "q" + text_digest(text)
