"""Whether a passage holds one of a question's answers, after answer normalisation: the filter
that keeps answer-bearing passages out of an open-domain QA question's negatives (NQ, DPR).

Holds matching and the negatives filter only; scoring answer recall is metrics/answers.py's.

Why a second matcher: evaluation keeps DPR's exact rule (metrics/answers.py) so numbers compare
with published ones, while a negatives filter should rather drop too much than keep a false
negative. So matching here is looser and, on every text tried, a superset of DPR's: Unicode
NFKD with accents removed (Beyoncé = Beyonce, ﬁ = fi, full-width = ASCII), case folded
(Straße = STRASSE), every punctuation, symbol, control or separator character a space (as in
SQuAD's normalisation, but a space rather than nothing, so DPR's re-tokenised answers such as
"Destiny 's Child" or "May 18 , 2018" meet the passage's "Destiny's Child", "May 18, 2018"),
whitespace tokens, the articles a/an/the dropped; an answer matches when its token sequence
occurs contiguously in the passage's. An answer left with no token ("", "the", "...") never
matches: it would otherwise match every passage.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache

ARTICLES = frozenset({"a", "an", "the"})


def normalized_tokens(text: str) -> list[str]:
    """``text``'s tokens after the normalisation above, articles dropped."""
    # folding leaves NFKD text NFKD (checked over every code point)
    text = unicodedata.normalize("NFKD", text).casefold().translate(_character_map())
    return [token for token in text.split() if token not in ARTICLES]


def answer_keys(answers: Iterable[str]) -> list[str]:
    """Each answer as " tok1 tok2 ... ": the form ``contains_answer`` looks for (answers with
    no token are left out)."""
    keys = (" ".join(normalized_tokens(answer)) for answer in answers)
    return [f" {key} " for key in dict.fromkeys(keys) if key]


def contains_answer(answers: Iterable[str], text: str) -> bool:
    """True if some answer's normalised token sequence occurs contiguously in ``text``'s."""
    return _holds(answer_keys(answers), _padded(text))


def drop_answer_passages(
    rows: list[dict],
    answers: Mapping[str, Sequence[str]],
    texts_of: Callable[[set[str]], Mapping[str, str]],
    keep: int | None = None,
) -> int:
    """Remove from each example row's ``negatives`` (in place) the passages that hold one of
    its question's ``answers``; returns how many were removed.

    ``texts_of(pids)`` gives the passage texts to look in (DPR looks in the body, not the
    title). With ``keep``, a row's list is read in order only until ``keep`` answer-free
    passages are found, and cut there: a long mined list costs what ``keep`` needs, not its
    length. A question with no answers, or absent from ``answers``, keeps its list.
    """
    keys = {i: answer_keys(answers.get(row["qid"], ())) for i, row in enumerate(rows)}
    pending = {i: 0 for i, found in keys.items() if found}  # row -> how far its list was read
    kept: dict[int, list[str]] = {i: [] for i in pending}
    removed = 0
    while pending:
        window = {}
        for i, start in pending.items():
            want = len(rows[i]["negatives"]) if keep is None else 2 * (keep - len(kept[i]))
            window[i] = rows[i]["negatives"][start : start + max(want, 1)]
        texts = texts_of({pid for pids in window.values() for pid in pids})
        normalized: dict[str, str] = {}
        for i, pids in window.items():
            for pid in pids:
                if keep is not None and len(kept[i]) >= keep:
                    break
                pending[i] += 1
                if pid not in normalized:
                    normalized[pid] = _padded(texts.get(pid) or "")
                if _holds(keys[i], normalized[pid]):
                    removed += 1
                else:
                    kept[i].append(pid)
        pending = {
            i: read
            for i, read in pending.items()
            if read < len(rows[i]["negatives"]) and (keep is None or len(kept[i]) < keep)
        }
    for i, pids in kept.items():
        rows[i]["negatives"] = pids
    return removed


def _padded(text: str) -> str:
    return f" {' '.join(normalized_tokens(text))} "


def _holds(keys: Sequence[str], padded_text: str) -> bool:
    return any(key in padded_text for key in keys)


@cache
def _character_map() -> dict[int, str | None]:
    """``str.translate`` table: accents (Mn) removed; punctuation, symbols, separators and
    control/format characters (P, S, Z, Cc, Cf) made spaces; 10,757 code points, built once
    (a translate table runs ~15x faster than a regex over the same Unicode classes)."""
    table: dict[int, str | None] = {}
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if category == "Mn":
            table[code] = None
        elif category[0] in "PSZ" or category in ("Cc", "Cf"):
            table[code] = " "
    return table
