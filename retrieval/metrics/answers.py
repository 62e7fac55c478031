"""Answer recall for open-domain QA (NQ, TriviaQA) with DPR's rule: an answer's tokens in a passage.

Holds text matching only; it knows nothing about qrels or trec_eval (see evaluate.py for those).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache

Passages = Mapping[str, str] | Callable[[str], str]


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` after Unicode NFD, the way DPR's SimpleTokenizer splits.

    A token is a maximal run of letters, digits and combining marks (Unicode categories L, N, M),
    or else one character that is not a separator or control/format/unassigned (Z, C).
    So "Destiny's Child" -> ["destiny", "'", "s", "child"], and since NFD keeps accents as
    combining marks inside the token, "beyoncé" and "beyonce" stay different tokens.
    """
    text = unicodedata.normalize("NFD", text)
    return [token.lower() for token in _token_pattern().findall(text)]


def has_answer(answers: Iterable[str], text: str) -> bool:
    """True if some answer's token sequence occurs contiguously in ``text``'s token sequence.

    Answers that tokenise to nothing (empty or whitespace only) never match; DPR's loop would
    count an empty answer as found in every passage.
    """
    tokens = tokenize(text)
    return any(_contains(tokens, tokenize(answer)) for answer in answers)


def answer_recall(
    run_ranked: Mapping[str, Sequence[str]],
    passages: Passages,
    answers: Mapping[str, Sequence[str]],
    ks: Sequence[int] = (1, 5, 20, 100),
) -> dict[str, float]:
    """``{"answer_recall@K": fraction of questions with an answer-bearing passage in the top K}``.

    ``run_ranked`` maps qid to passage ids best first; ``passages`` maps pid to passage text
    (a mapping or a function). The denominator is every question in ``answers``; a question
    missing from the run, or with no answers, counts as a miss (DPR's top-k accuracy).
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")
    if not answers:
        raise ValueError("answers is empty: no question to score")
    text_of = passages if callable(passages) else passages.__getitem__
    depth = max(ks)
    first_hits: list[int | None] = []
    for qid, question_answers in answers.items():
        wanted = [t for t in (tokenize(a) for a in question_answers) if t]
        first = None
        for rank, pid in enumerate(run_ranked.get(qid, ())[:depth], start=1):
            tokens = tokenize(text_of(pid))
            if any(_contains(tokens, answer) for answer in wanted):
                first = rank
                break
        first_hits.append(first)
    n = len(first_hits)
    return {
        f"answer_recall@{k}": sum(1 for r in first_hits if r is not None and r <= k) / n for k in ks
    }


def _contains(tokens: Sequence[str], answer: Sequence[str]) -> bool:
    """Whether ``answer`` (non-empty) is a contiguous subsequence of ``tokens``."""
    if not answer:
        return False
    head, width = answer[0], len(answer)
    answer = list(answer)
    return any(
        token == head and tokens[i : i + width] == answer
        for i, token in enumerate(tokens[: len(tokens) - width + 1])
    )


@cache
def _token_pattern() -> re.Pattern[str]:
    """``[LNM]+|[^ZC]`` as a stdlib regex, its classes built from ``unicodedata`` once."""
    word = _char_class(lambda cat: cat[0] in "LNM")
    blank = _char_class(lambda cat: cat[0] in "ZC")
    return re.compile(f"[{word}]+|[^{blank}]")


def _char_class(wanted: Callable[[str], bool]) -> str:
    """Regex class body with every code point whose Unicode category satisfies ``wanted``."""
    parts: list[str] = []
    start = None
    for code in range(sys.maxunicode + 2):
        inside = code <= sys.maxunicode and wanted(unicodedata.category(chr(code)))
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            parts.append(f"\\U{start:08x}-\\U{code - 1:08x}")
            start = None
    return "".join(parts)
