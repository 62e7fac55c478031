"""DPR-style answer matching and answer recall, on hand examples and the real DPR NQ-dev sample.

Holds tests of retrieval.metrics.answers only; ranking metrics are tested in test_metrics.py.
The sample is the excerpt in tests/data/fixtures (all positives, 30 hard negatives a question:
README.md there); the tests that count the whole sample take ``full_fixtures_dir``.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from retrieval.metrics import answer_recall, has_answer, tokenize

SAMPLE = Path("nq_dpr_biencoder_sample") / "nq-biencoder-dev.sample5.excerpt.json"
FULL_SAMPLE = Path("nq_dpr_biencoder_sample") / "biencoder-nq-dev.sample5.json"


@pytest.fixture(scope="module")
def nq_sample(fixtures_dir: Path) -> list[dict]:
    return json.loads((fixtures_dir / SAMPLE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def full_nq_sample(full_fixtures_dir: Path) -> list[dict]:
    return json.loads((full_fixtures_dir / FULL_SAMPLE).read_text(encoding="utf-8"))


def test_tokens_are_alphanumeric_runs_and_single_other_characters() -> None:
    assert tokenize("Destiny's Child") == ["destiny", "'", "s", "child"]
    assert tokenize("Destiny 's Child") == ["destiny", "'", "s", "child"]
    assert tokenize("July 5 , 2018") == tokenize("July 5, 2018") == ["july", "5", ",", "2018"]
    assert tokenize("Jay-Z...") == ["jay", "-", "z", ".", ".", "."]
    assert tokenize("  $1,000\tU.S.\n") == ["$", "1", ",", "000", "u", ".", "s", "."]
    assert tokenize("東京 Ⅻ x²") == ["東京", "ⅻ", "x²"]  # letters and numbers of any script
    assert tokenize("") == []


def test_accents_stay_in_the_token_after_nfd() -> None:
    composed, decomposed = "Beyonc\u00e9", "Beyonce\u0301"
    assert tokenize(composed) == tokenize(decomposed) == ["beyonce\u0301"]
    assert has_answer([composed], f"songs by {decomposed} in 2003")
    assert has_answer([decomposed], f"songs by {composed.upper()} in 2003")
    # DPR does not strip accents: the unaccented spelling is a different token
    assert not has_answer(["Beyonce"], "songs by Beyoncé")


def test_has_answer_follows_dpr_rules() -> None:
    text = "Destiny's Child were an American girl group; Beyoncé left in 2006."
    assert has_answer(["Destiny 's Child"], text)  # DPR-style spaced answer text
    assert has_answer(["DESTINY'S CHILD"], text)  # case-insensitive
    assert has_answer(["nothing here", "2006"], text)  # any answer will do
    assert not has_answer(["Destiny"], "Destinys Child")  # whole tokens only
    assert not has_answer(["girl American"], text)  # contiguous and in order
    assert not has_answer(["200"], text)
    assert has_answer(["group ;"], text)  # punctuation is a token like any other
    assert not has_answer(["", "   "], text)  # an empty answer never matches
    assert not has_answer([], text)


def test_tokenizer_equals_the_unicode_property_pattern_on_assigned_characters() -> None:
    # independent reference: the third-party `regex` module's \p{..} classes
    regex = pytest.importorskip("regex")
    pattern = regex.compile(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]")
    text = "".join(
        chr(code)
        for code in range(0x20, 0x3400)
        if unicodedata.category(chr(code)) != "Cn"  # newer Unicode in `regex` may assign these
    )
    text = unicodedata.normalize("NFD", text)
    assert tokenize(text) == [token.lower() for token in pattern.findall(text)]


def test_answer_recall_by_hand() -> None:
    passages = {
        "p1": "The Eiffel Tower is in Paris.",
        "p2": "Gustave Eiffel's company built it in 1889.",
        "p3": "London has the Tower Bridge.",
    }
    run = {"q1": ["p1", "p3"], "q2": ["p3", "p2", "p1"], "q3": ["p3", "p1"]}
    answers = {
        "q1": ["Paris"],  # rank 1
        "q2": ["1889", "Gustave"],  # rank 2
        "q3": ["Rome"],  # never
        "q4": ["Paris"],  # not in the run: a miss
    }
    expected = {"answer_recall@1": 1 / 4, "answer_recall@2": 2 / 4, "answer_recall@3": 2 / 4}
    assert answer_recall(run, passages, answers, ks=(1, 2, 3)) == expected
    seen: list[str] = []

    def lookup(pid: str) -> str:
        seen.append(pid)
        return passages[pid]

    assert answer_recall(run, lookup, answers, ks=(1, 2, 3)) == expected
    # only the top max(ks) passages are read, and a question stops at its first hit
    answer_recall(run, lookup, answers, ks=(1,))
    assert seen[-3:] == ["p1", "p3", "p3"]


def test_answer_recall_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ks"):
        answer_recall({}, {}, {"q": ["a"]}, ks=(0, 5))
    with pytest.raises(ValueError, match="empty"):
        answer_recall({}, {}, {})


def _check_positives_and_hard_negatives(sample: list[dict], hard_negatives: int) -> None:
    positives = [(r["answers"], c["text"]) for r in sample for c in r["positive_ctxs"]]
    hard = [(r["answers"], c["text"]) for r in sample for c in r["hard_negative_ctxs"]]
    assert len(positives) == 22 and len(hard) == hard_negatives
    # DPR selected positives by this very rule: all 22 match (incl. "July 5 , 2018" against the
    # text "July 5, 2018")
    assert all(has_answer(answers, text) for answers, text in positives)
    # hard negatives are BM25 passages without the answer; one contains "2002" in other words
    # ("Eli (1987–2002)" for the question about Wesley leaving in 2002)
    assert sum(has_answer(answers, text) for answers, text in hard) <= 2


def test_dpr_positives_contain_an_answer_and_hard_negatives_mostly_do_not(nq_sample) -> None:
    _check_positives_and_hard_negatives(nq_sample, 153)  # the excerpt keeps that one


def test_dpr_positives_and_hard_negatives_of_the_whole_sample(full_nq_sample) -> None:
    _check_positives_and_hard_negatives(full_nq_sample, 483)


def _check_answer_recall(sample: list[dict]) -> None:
    # one ranked list per question: hard negatives first, then the positives
    passages: dict[str, str] = {}
    run: dict[str, list[str]] = {}
    answers: dict[str, list[str]] = {}
    for i, record in enumerate(sample):
        qid = f"q{i}"
        answers[qid] = record["answers"]
        ranked = []
        for ctx in record["hard_negative_ctxs"][:30] + record["positive_ctxs"]:
            passages[ctx["passage_id"]] = ctx["text"]
            ranked.append(ctx["passage_id"])
        run[qid] = ranked
    got = answer_recall(run, passages, answers, ks=(1, 30, 31))
    hard_hits = sum(any(has_answer(answers[q], passages[p]) for p in run[q][:30]) for q in run)
    assert got == {
        "answer_recall@1": sum(has_answer(answers[q], passages[run[q][0]]) for q in run) / 5,
        "answer_recall@30": hard_hits / 5,
        "answer_recall@31": 1.0,  # every question's first positive sits at rank 31
    }
    assert got["answer_recall@30"] <= 0.2


def test_answer_recall_on_the_dpr_sample(nq_sample) -> None:
    _check_answer_recall(nq_sample)  # the excerpt keeps the first 30 hard negatives


def test_answer_recall_on_the_whole_dpr_sample(full_nq_sample) -> None:
    _check_answer_recall(full_nq_sample)
