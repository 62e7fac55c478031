"""Normalised answer matching against hand-made cases (Unicode, punctuation, articles, word
boundaries), against DPR's own rule on real NQ passages, and the negatives filter built on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.answers_match import (
    contains_answer,
    drop_answer_passages,
    normalized_tokens,
)
from retrieval.metrics.answers import has_answer as dpr_has_answer

# (answers, passage, expected, why)
CASES = [
    (["Linda Davis"], "Reba McEntire sang it with Linda Davis in 1993.", True, "plain"),
    (["linda davis"], "LINDA DAVIS", True, "case"),
    (["Destiny 's Child"], "Beyoncé rose to fame in Destiny's Child.", True, "DPR re-tokenised"),
    (["May 18 , 2018"], "It opened on May 18, 2018 in Tokyo.", True, "comma spacing"),
    (["581 ( second edition )"], "It runs to 581 (second edition) pages.", True, "brackets"),
    (["Beyoncé"], "Beyonce Knowles", True, "accent folded"),
    (["Beyonce"], "BEYONCÉ", True, "accent folded, upper case"),
    (["Straße"], "STRASSE 5", True, "ß folds to ss"),
    (["final"], "the ﬁnal score", True, "ligature"),
    (["ABC"], "ＡＢＣ News", True, "full-width letters"),
    (["Linda Davis"], "Linda\u00a0Davis", True, "no-break space"),
    (["Linda Davis"], "Linda\u200bDavis", True, "zero-width space (a format character)"),
    (["Москва"], "Столица России — москва.", True, "Cyrillic, dash"),
    (["the Saint Lawrence River"], "flows into Saint Lawrence River", True, "article dropped"),
    (["Saint Lawrence River"], "the Saint-Lawrence river", True, "hyphen"),
    (["The Who"], "a concert by the who", True, "articles on both sides"),
    (["2002"], "left in 2002.", True, "number at a full stop"),
    (["1,000"], "some 1 000 people", True, "digit grouping"),
    (["cat"], "concatenate", False, "inside a word"),
    (["New York"], "New Yorker magazine", False, "prefix of a word"),
    (["York New"], "New York", False, "order matters"),
    (["Roy Raymond"], "Roy went home. Raymond stayed.", False, "not contiguous"),
    (["1000"], "1,000", False, "grouping splits a number"),
    (["東京"], "東京は日本の首都", False, "unspaced script: whole runs, as DPR"),
    ([""], "any text", False, "empty answer"),
    (["the"], "the cat", False, "article only"),
    (["..."], "wait... what", False, "punctuation only"),
    ([], "any text", False, "no answers"),
    (["zebra", "Linda Davis"], "with Linda Davis", True, "any of several"),
]


@pytest.mark.parametrize(("answers", "text", "expected", "why"), CASES, ids=[c[3] for c in CASES])
def test_hand_made_cases(answers, text, expected, why):
    assert contains_answer(answers, text) is expected


def test_tokens():
    assert normalized_tokens("The Beatles' “Help!” (1965) — a №1") == [
        "beatles",
        "help",
        "1965",
        "no1",
    ]
    assert normalized_tokens("  \t\n") == []


def test_looser_than_dpr_where_it_should_be():
    """Cases DPR's tokenizer match misses but a negatives filter must catch."""
    for answers, text in [(["Beyoncé"], "Beyonce"), (["Saint Lawrence"], "Saint-Lawrence")]:
        assert contains_answer(answers, text) and not dpr_has_answer(answers, text)


def _superset_of_dpr(path: Path) -> tuple[int, int]:
    """Every (question, passage) pair of a DPR biencoder file: where DPR's rule finds an answer,
    this one does too; every gold positive holds its answer. Returns (pairs, DPR's hits)."""
    records = json.loads(path.read_text(encoding="utf-8"))
    pairs = dpr_hits = 0
    for record in records:
        answers = record["answers"]
        for ctx in record["positive_ctxs"]:
            assert contains_answer(answers, ctx["text"])
        for key in ("positive_ctxs", "hard_negative_ctxs", "negative_ctxs"):
            for ctx in record[key]:
                pairs += 1
                if dpr_has_answer(answers, ctx["text"]):
                    dpr_hits += 1
                    assert contains_answer(answers, ctx["text"]), (answers, ctx["text"])
    return pairs, dpr_hits


def test_a_superset_of_dpr_on_real_nq_passages(fixtures_dir):
    """On the excerpt of DPR's biencoder sample (tests/data/fixtures/README.md)."""
    path = fixtures_dir / "nq_dpr_biencoder_sample" / "nq-biencoder-dev.sample5.excerpt.json"
    pairs, dpr_hits = _superset_of_dpr(path)
    assert pairs == 225 and dpr_hits >= 22  # 22 gold positives, plus what DPR finds elsewhere


def test_a_superset_of_dpr_on_the_whole_nq_sample(full_fixtures_dir):
    path = full_fixtures_dir / "nq_dpr_biencoder_sample" / "biencoder-nq-dev.sample5.json"
    pairs, dpr_hits = _superset_of_dpr(path)
    assert pairs > 700 and dpr_hits >= 22  # 22 gold positives, plus what DPR finds elsewhere


TEXTS = {
    "p1": "Linda Davis sang with Reba.",
    "p2": "A passage about lakes.",
    "p3": "Reba McEntire is a singer.",
    "p4": "linda davis again",
    "p5": "Country music in 1993.",
    "p6": "Another one without it.",
}


def test_drop_answer_passages_keeps_order_and_counts():
    asked: list[set[str]] = []

    def texts_of(pids):
        asked.append(set(pids))
        return {p: TEXTS[p] for p in pids}

    rows = [
        {"qid": "q1", "negatives": ["p1", "p2", "p3", "p4", "p5"]},
        {"qid": "q2", "negatives": ["p1", "p4"]},  # no answers: untouched
        {"qid": "q3", "negatives": ["p2", "p1"]},
    ]
    answers = {"q1": ["Linda Davis"], "q3": ["lakes", "the"]}
    removed = drop_answer_passages(rows, answers, texts_of)
    assert [r["negatives"] for r in rows] == [["p2", "p3", "p5"], ["p1", "p4"], ["p1"]]
    assert removed == 3 and len(asked) == 1


def test_drop_answer_passages_reads_only_what_keep_needs():
    asked: list[set[str]] = []

    def texts_of(pids):
        asked.append(set(pids))
        return {p: TEXTS[p] for p in pids}

    rows = [{"qid": "q1", "negatives": ["p1", "p4", "p2", "p3", "p5", "p6"]}]
    removed = drop_answer_passages(rows, {"q1": ["Linda Davis"]}, texts_of, keep=2)
    assert rows[0]["negatives"] == ["p2", "p3"] and removed == 2
    assert asked == [{"p1", "p4", "p2", "p3"}]  # p5, p6 never read
    asked.clear()
    rows = [{"qid": "q1", "negatives": ["p1", "p4", "p2", "p3", "p5", "p6"]}]
    removed = drop_answer_passages(rows, {"q1": ["Linda Davis"]}, texts_of, keep=1)
    assert rows[0]["negatives"] == ["p2"] and removed == 2
    assert asked == [{"p1", "p4"}, {"p2", "p3"}]  # a second look when the first found none
