"""MS MARCO readers on the real dev-small queries/qrels and SPLADE's toy collection and triples.

The default tests read the excerpts in tests/data/fixtures (facts in its README.md: the toy
collection and triples are whole, dev-small is 143 queries with their 152 judgments). The tests
of whole-file facts (the README numbers of ../shared/fixtures/msmarco_passage_dev_small) take
``full_fixtures_dir`` and skip without ../shared.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.tables import DataError, read_table
from retrieval.tables.readers import prepare_msmarco
from retrieval.tables.readers.ids import text_pid, text_qid
from retrieval.tables.readers.msmarco import (
    read_msmarco_collection,
    read_msmarco_qrels,
    read_msmarco_queries,
    read_msmarco_triples,
    read_msmarco_triples_corpus,
)
from tests.retrieval.reader_checks import check_error, head_lines, write_lines

DEV_SMALL = "msmarco_passage_dev_small"
ANSERINI_QRELS = "qrels.msmarco-passage.dev-subset"  # space separated, as anserini ships them


@pytest.fixture(scope="module")
def dev_small(fixtures_dir: Path) -> Path:
    return fixtures_dir / DEV_SMALL


@pytest.fixture(scope="module")
def queries(dev_small: Path) -> Path:
    return dev_small / "queries.dev.small.excerpt.tsv"


@pytest.fixture(scope="module")
def qrels(dev_small: Path) -> Path:
    return dev_small / "qrels.dev.small.excerpt.tsv"


@pytest.fixture(scope="module")
def toy(fixtures_dir: Path) -> Path:
    return fixtures_dir / "msmarco_passage_toy_splade"


def _check_dev_small(queries: Path, qrels: Path, out: Path, counts: tuple[int, int, int]) -> None:
    """Prepared as tables: ``counts`` = (judgments, queries, distinct pids), every query judged
    and every judgment's query known, all labels 1, the texts kept exactly."""
    judgments, num_queries, pids = counts
    manifests = prepare_msmarco(None, {"dev": queries}, {"dev": qrels}, out)
    assert "corpus" not in manifests
    table = read_table(out / "qrels-dev")
    assert table.num_rows == judgments
    assert len(set(table["qid"].to_pylist())) == num_queries
    assert len(set(table["pid"].to_pylist())) == pids
    assert set(table["relevance"].to_pylist()) == {1}
    rows = read_table(out / "queries-dev").to_pylist()
    assert len(rows) == num_queries
    texts = {row["qid"]: row["text"] for row in rows}
    assert texts["2"] == " Androgen receptor define"  # the genuine leading space is kept
    assert texts["1048585"] == "what is paula deen's brother"


def test_dev_small_excerpt_counts(queries: Path, qrels: Path, tmp_path: Path) -> None:
    _check_dev_small(queries, qrels, tmp_path / "out", (152, 143, 152))


def test_dev_small_counts(full_fixtures_dir: Path, tmp_path: Path) -> None:
    full = full_fixtures_dir / DEV_SMALL
    counts = (7437, 6980, 7433)  # ../shared/fixtures/msmarco_passage_dev_small/README.txt
    _check_dev_small(
        full / "queries.dev.small.tsv", full / "qrels.dev.small.tsv", tmp_path / "out", counts
    )


def test_space_separated_qrels_read_like_tabs(dev_small: Path, qrels: Path) -> None:
    anserini = dev_small / "original_anserini"
    spaced = list(read_msmarco_qrels(anserini / f"{ANSERINI_QRELS}.excerpt.txt"))
    assert b" " in (anserini / f"{ANSERINI_QRELS}.excerpt.txt").read_bytes()
    assert spaced == list(read_msmarco_qrels(qrels))
    assert spaced[0] == {"qid": "300674", "pid": "7067032", "relevance": 1}


def test_space_separated_full_files_read_like_tabs(full_fixtures_dir: Path) -> None:
    dev_small = full_fixtures_dir / DEV_SMALL
    anserini = dev_small / "original_anserini"
    spaced = list(read_msmarco_qrels(anserini / f"{ANSERINI_QRELS}.txt"))
    assert spaced == list(read_msmarco_qrels(dev_small / "qrels.dev.small.tsv"))
    assert spaced[0] == {"qid": "300674", "pid": "7067032", "relevance": 1}
    topics = list(read_msmarco_queries(anserini / "topics.msmarco-passage.dev-subset.txt"))
    assert topics == list(read_msmarco_queries(dev_small / "queries.dev.small.tsv"))


def test_two_column_qrels(qrels: Path, tmp_path: Path) -> None:
    lines = [line.decode().split("\t") for line in head_lines(qrels, 50)]
    two = write_lines(tmp_path / "qrels.tsv", [f"{q}\t{p}" for q, _, p, _ in lines])
    rows = list(read_msmarco_qrels(two))
    assert rows == list(read_msmarco_qrels(qrels))[:50]


def test_toy_collection(toy: Path) -> None:
    rows = list(read_msmarco_collection(toy / "full_collection" / "raw.tsv"))
    assert len(rows) == 89
    missing = {41, 42, 43, 44, 60, 61, 62, 63, 79, 80, 81}
    assert {row["pid"] for row in rows} == {str(pid) for pid in range(100) if pid not in missing}
    assert rows[0]["pid"] == "0"
    assert rows[0]["title"] == ""
    assert rows[0]["text"].startswith("The presence of communication amid scientific minds")


def test_triples_get_hash_ids(toy: Path, tmp_path: Path) -> None:
    triples = toy / "triplets" / "raw.tsv"
    lines = triples.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 100
    manifests = prepare_msmarco(None, {}, {}, tmp_path / "out", triples=triples)
    examples = read_table(tmp_path / "out" / "examples-train").to_pylist()
    assert len(examples) == 100
    query, positive, negative = lines[0].split("\t")
    assert examples[0]["query"] == query == "is a little caffeine ok during pregnancy"
    assert examples[0]["qid"] == text_qid(query)
    assert examples[0]["positives"] == [text_pid(positive)]
    assert examples[0]["negatives"] == [text_pid(negative)]
    # each distinct passage text once in the corpus, mojibake kept as it is in the real file
    corpus = read_table(tmp_path / "out" / "corpus").to_pylist()
    distinct = {text for line in lines for text in line.split("\t")[1:]}
    assert manifests["corpus"]["rows"] == len(distinct)
    assert {row["text"] for row in corpus} == distinct
    assert positive.startswith("We don\u00e2\u0080\u0099t know")  # UTF-8 read as cp1252 once
    pids = {row["pid"] for row in corpus}
    assert all(pid in pids for ex in examples for pid in ex["positives"] + ex["negatives"])
    assert all(len(pid) == 17 and pid.startswith("h") for pid in pids)


def test_triples_link_to_collection_and_queries(toy: Path, tmp_path: Path) -> None:
    """Given a collection, triples use its pids: no passage is in the corpus under two ids."""
    triples = toy / "triplets" / "raw.tsv"
    lines = [line.split("\t") for line in triples.read_text(encoding="utf-8").split("\n")[:-1]]
    texts = list(dict.fromkeys(text for line in lines[:10] for text in line[1:]))
    collection = write_lines(
        tmp_path / "collection.tsv",
        head_lines(toy / "full_collection" / "raw.tsv", 89)
        + [f"{9000 + i}\t{text}" for i, text in enumerate(texts)],
    )
    queries = write_lines(
        tmp_path / "queries.train.tsv", [f"{500 + i}\t{line[0]}" for i, line in enumerate(lines)]
    )
    few = write_lines(tmp_path / "triples.tsv", ["\t".join(line) for line in lines[:10]])
    prepare_msmarco(collection, {"train": queries}, {}, tmp_path / "out", triples=few)
    assert read_table(tmp_path / "out" / "corpus").num_rows == 89 + len(texts)
    examples = read_table(tmp_path / "out" / "examples-train").to_pylist()
    assert [ex["qid"] for ex in examples] == [str(500 + i) for i in range(10)]
    assert examples[0]["positives"] == [str(9000 + texts.index(lines[0][1]))]
    assert examples[0]["negatives"] == [str(9000 + texts.index(lines[0][2]))]
    # a triple passage the collection lacks is an unknown id
    broken = write_lines(tmp_path / "triples2.tsv", ["\t".join(line) for line in lines[:11]])
    err = _fails(collection, {"train": queries}, {}, tmp_path / "out2", triples=broken)
    check_error(err, broken, 11, "positive")
    rows = list(read_msmarco_triples(broken, passage_ids=None, query_ids=None))
    assert len(rows) == 11


def test_triples_corpus_dedups(toy: Path) -> None:
    rows = list(read_msmarco_triples_corpus(toy / "triplets" / "raw.tsv"))
    assert len({row["pid"] for row in rows}) == len(rows)


# --- broken inputs --------------------------------------------------------------------------


def _fails(*args, **kwargs) -> DataError:
    out = args[3]
    with pytest.raises(DataError) as info:
        prepare_msmarco(*args, **kwargs)
    assert not out.exists()
    return info.value


def test_qrels_pid_not_in_collection(toy: Path, queries: Path, qrels: Path, tmp_path: Path) -> None:
    err = _fails(
        toy / "full_collection" / "raw.tsv", {"dev": queries}, {"dev": qrels}, tmp_path / "out"
    )
    check_error(err, qrels, 1, "pid")
    assert "'7067032'" in str(err)


def test_qrels_qid_not_in_queries(queries: Path, qrels: Path, tmp_path: Path) -> None:
    three = write_lines(tmp_path / "q.tsv", head_lines(queries, 3))
    err = _fails(None, {"dev": three}, {"dev": qrels}, tmp_path / "out")
    check_error(err, qrels, 1, "qid")
    prepare_msmarco(None, {"dev": three}, {"dev": qrels}, tmp_path / "out", on_unknown_id="skip")
    assert read_table(tmp_path / "out" / "queries-dev").num_rows == 3


def test_duplicate_pid(toy: Path, tmp_path: Path) -> None:
    lines = head_lines(toy / "full_collection" / "raw.tsv", 5)
    collection = write_lines(tmp_path / "collection.tsv", lines + lines[2:3])
    check_error(_fails(collection, {}, {}, tmp_path / "out"), collection, 6, "pid")
    prepare_msmarco(collection, {}, {}, tmp_path / "out", on_duplicate="keep_first")
    assert read_table(tmp_path / "out" / "corpus").num_rows == 5


def test_missing_passage_field(toy: Path, tmp_path: Path) -> None:
    lines = head_lines(toy / "full_collection" / "raw.tsv", 5)
    lines[3] = lines[3].split(b"\t")[0]
    collection = write_lines(tmp_path / "collection.tsv", lines)
    check_error(_fails(collection, {}, {}, tmp_path / "out"), collection, 4, "passage")


def test_bad_qrels_lines(qrels: Path, tmp_path: Path) -> None:
    lines = head_lines(qrels, 4)
    for lineno, bad in ((2, b"300674\t0\t7067032"), (3, b"1\t0\t2\tyes")):
        broken = list(lines)
        broken[lineno - 1] = bad
        bad_qrels = write_lines(tmp_path / "qrels.tsv", broken)
        err = _fails(None, {}, {"dev": bad_qrels}, tmp_path / "out")
        check_error(err, bad_qrels, lineno, "relevance")


def test_empty_and_non_utf8_queries(queries: Path, tmp_path: Path) -> None:
    empty = write_lines(tmp_path / "empty.tsv", [])
    check_error(_fails(None, {"dev": empty}, {}, tmp_path / "out"), empty, None)
    lines = head_lines(queries, 4)
    lines[2] = lines[2].replace(b"headaches", b"head\xa0aches")
    latin1 = write_lines(tmp_path / "latin1.tsv", lines)
    err = _fails(None, {"dev": latin1}, {}, tmp_path / "out")
    check_error(err, latin1, 3)
    assert "not valid UTF-8" in str(err)


def test_empty_triple_text(toy: Path, tmp_path: Path) -> None:
    lines = head_lines(toy / "triplets" / "raw.tsv", 3)
    query, positive, _ = lines[1].decode().split("\t")
    triples = write_lines(tmp_path / "t.tsv", [lines[0], f"{query}\t{positive}\t", lines[2]])
    check_error(_fails(None, {}, {}, tmp_path / "out", triples=triples), triples, 2, "negative")
