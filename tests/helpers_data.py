"""Tiny datasets for encoding, evaluation and CLI tests, written into a test's tmp folder.

Built from the real-data excerpts committed in tests/data (SciFact, the MS MARCO collection head
in tests/data/fixtures) or written by hand (NQ), in the raw formats users hand to `rqa`, so the
tests go through the same readers they do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SCIFACT_SLICE_DOCS = 200


def write_scifact_slice(source: Path, dest: Path, n_docs: int = SCIFACT_SLICE_DOCS) -> Path:
    """A BEIR folder with ~``n_docs`` SciFact documents and the dev queries judged on them.

    The first 200 documents of SciFact hold the judged documents of only 2 dev queries, so the
    slice keeps every document judged in dev plus the first others in corpus order, up to
    ``n_docs`` (corpus order is kept). Every dev query then has all its judged documents in the
    slice, and queries.jsonl and qrels/dev.tsv keep exactly those queries and their judgments.
    """
    qrels_lines = (source / "qrels" / "dev.tsv").read_text().splitlines()
    header, judgments = qrels_lines[0], [line.split("\t") for line in qrels_lines[1:] if line]
    judged_docs = {pid for _, pid, _ in judgments}
    others = n_docs - len(judged_docs)
    corpus = []
    for line in (source / "corpus.jsonl").read_text().splitlines():
        pid = json.loads(line)["_id"]
        if pid in judged_docs:
            corpus.append(line)
        elif others > 0:
            corpus.append(line)
            others -= 1
    kept_pids = {json.loads(line)["_id"] for line in corpus}
    kept_qids = {qid for qid, _, _ in judgments}
    kept_qids -= {qid for qid, pid, _ in judgments if pid not in kept_pids}
    queries = [
        line
        for line in (source / "queries.jsonl").read_text().splitlines()
        if json.loads(line)["_id"] in kept_qids
    ]
    (dest / "qrels").mkdir(parents=True)
    (dest / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    (dest / "queries.jsonl").write_text("\n".join(queries) + "\n")
    rows = ["\t".join(row) for row in judgments if row[0] in kept_qids]
    (dest / "qrels" / "dev.tsv").write_text("\n".join([header, *rows]) + "\n")
    return dest


def read_beir_qrels(folder: Path, split: str = "dev") -> dict[str, dict[str, int]]:
    """``{qid: {pid: relevance}}`` straight from a BEIR qrels tsv (header skipped)."""
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        qid, pid, score = line.split("\t")
        qrels.setdefault(qid, {})[pid] = int(score)
    return qrels


def break_corpus_line(folder: Path, dest: Path, lineno: int) -> Path:
    """A copy of BEIR ``folder`` whose corpus.jsonl line ``lineno`` has a number as its text."""
    shutil.copytree(folder, dest)
    lines = (dest / "corpus.jsonl").read_text().splitlines()
    lines[lineno - 1] = json.dumps({"_id": "broken", "title": "", "text": 12345})
    (dest / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return dest


# NQ: (id, text, title) passages in DPR's psgs_w100.tsv layout, and qa.csv questions.
# "Zanzibar" is only ever a title: DPR looks for answers in the passage body, never the title.
NQ_PASSAGES = [
    ("1", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.", "Eiffel Tower"),
    ("2", "Beyonce rose to fame as the lead singer of Destiny's Child.", "Beyonce"),
    ("3", "Mount Everest is Earth's highest mountain above sea level.", "Mount Everest"),
    ("4", "Rome is the capital city of Italy and of the Lazio region.", "Rome"),
    ("5", "The Nile is a major north-flowing river in northeastern Africa.", "Nile"),
    ("6", "Marie Curie was the first woman to win a Nobel Prize.", "Marie Curie"),
    ("7", "Stone Town is the old part of the city, a World Heritage Site.", "Zanzibar"),
    ("8", "The Pacific Ocean is the largest and deepest of the oceanic divisions.", "Pacific"),
    ("9", "Tokyo is the capital of Japan and its most populous city.", "Tokyo"),
    ("10", "Photosynthesis turns light energy into chemical energy in plants.", "Photosynthesis"),
    ("11", "William Shakespeare wrote Hamlet around the year 1600.", "Hamlet"),
    ("12", "The Amazon rainforest covers much of the Amazon basin of South America.", "Amazon"),
    ("13", "Albert Einstein developed the theory of relativity.", "Albert Einstein"),
    ("14", "Canberra is the capital city of Australia.", "Canberra"),
    ("15", "The Great Wall of China is a series of fortifications.", "Great Wall"),
    ("16", "Jupiter is the fifth planet from the Sun and the largest.", "Jupiter"),
    ("17", "Leonardo da Vinci painted the Mona Lisa.", "Mona Lisa"),
    ("18", "The Sahara is a desert spanning North Africa.", "Sahara"),
    ("19", 'He said "the quick brown fox" jumps over the lazy dog.', "Pangram"),
    ("20", "Oxygen has the chemical symbol O and atomic number 8.", "Oxygen"),
    ("21", "The Danube flows through Vienna, Budapest and Belgrade.", "Danube"),
    ("22", "Mozart was a prolific composer of the Classical period.", "Mozart"),
    ("23", "Penguins are flightless birds of the Southern Hemisphere.", "Penguin"),
    ("24", "The Louvre in Paris is the world's most-visited museum.", "Louvre"),
]
NQ_QUESTIONS = [
    ("where is the eiffel tower", ["Paris"]),
    ("who was the lead singer of destiny's child", ["Beyonce", "Kelly Rowland"]),
    ("what is the capital of italy", ["Rome"]),
    ("which island is stone town on", ["Zanzibar"]),
    ("what is the capital of australia", ["Canberra"]),
    ("who painted the mona lisa", ["Leonardo da Vinci", "da Vinci"]),
    ("what is the atomic number of oxygen", ["8"]),
    ("what is the largest planet", ["Jupiter"]),
    ("who wrote hamlet", ["Shakespeare"]),
    ("where is the louvre", ["Paris"]),
    ("which composer wrote the magic flute", ["Mozart"]),
    ("what is the capital of france", ["Lyon"]),  # wrong on purpose: no passage holds it
]


def write_nq_files(dest: Path) -> tuple[Path, Path]:
    """Write psgs.tsv (header ``id text title``) and qa.csv (``question<TAB>['answer', ...]``)."""
    dest.mkdir(parents=True, exist_ok=True)
    psgs, qa = dest / "psgs.tsv", dest / "qa.csv"
    rows = ["id\ttext\ttitle"]
    for pid, text, title in NQ_PASSAGES:
        quoted = '"' + text.replace('"', '""') + '"' if '"' in text else text
        rows.append(f"{pid}\t{quoted}\t{title}")
    psgs.write_text("\n".join(rows) + "\n")
    qa.write_text("".join(f"{question}\t{answers!r}\n" for question, answers in NQ_QUESTIONS))
    return psgs, qa


# MS MARCO: made-up queries judged against real pids of the toy collection (genuine first
# lines of collection.tsv), in TREC qrels format (qid 0 pid relevance).
MSMARCO_QUERIES = {
    "q1": "what was the manhattan project",
    "q2": "did the atomic bomb end world war 2",
    "q3": "why was hanford chosen for the b reactor",
    "q4": "what is restorative justice",
}
MSMARCO_QRELS = [
    ("q1", "3", 1),
    ("q1", "7", 1),
    ("q2", "1", 1),
    ("q3", "9", 1),
    ("q4", "10", 2),
    ("q4", "11", 1),
]


def write_msmarco_files(collection: Path, dest: Path) -> tuple[Path, Path, Path]:
    """Copy ``collection`` as collection.tsv; write queries.tsv and qrels.tsv beside it."""
    dest.mkdir(parents=True, exist_ok=True)
    pids = {line.split("\t", 1)[0] for line in collection.read_text().splitlines()}
    assert {pid for _, pid, _ in MSMARCO_QRELS} <= pids, "qrels must name collection pids"
    shutil.copyfile(collection, dest / "collection.tsv")
    queries = "".join(f"{qid}\t{text}\n" for qid, text in MSMARCO_QUERIES.items())
    (dest / "queries.tsv").write_text(queries)
    qrels = "".join(f"{qid} 0 {pid} {rel}\n" for qid, pid, rel in MSMARCO_QRELS)
    (dest / "qrels.tsv").write_text(qrels)
    return dest / "collection.tsv", dest / "queries.tsv", dest / "qrels.tsv"


EXPECTED_NUMBERS = Path(__file__).parent / "data" / "expected_numbers.yaml"


def expected_number(name: str) -> dict:
    """An entry of tests/data/expected_numbers.yaml: its ``value``, ``tolerance`` and where the
    number comes from."""
    import yaml

    entry = yaml.safe_load(EXPECTED_NUMBERS.read_text(encoding="utf-8"))[name]
    assert {"value", "tolerance", "measured"} <= set(entry), name
    reference = entry.get("reference")
    if reference:  # the recorded value agrees with its outside source to the digits it prints
        assert round(entry["value"], reference["digits"]) == reference["value"], name
    return entry
