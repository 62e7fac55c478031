"""BEIR reader on real SciFact: the excerpt in tests/data/scifact (counts from tests/data/
README.md), the full folder where ../shared is there (counts from ../shared/datasets/README.md),
and broken copies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from retrieval.tables import QRELS, DataError, read_manifest, read_table
from retrieval.tables.readers import prepare_beir
from retrieval.tables.readers.beir import read_beir_corpus, read_beir_qrels, read_beir_queries
from tests.retrieval.reader_checks import check_error, head_lines, write_lines


@pytest.fixture(scope="module")
def scifact_tables(scifact_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("beir") / "prepare"
    prepare_beir(scifact_dir, out)
    return out


# (passages, (train judgments, train queries), (dev judgments, dev queries)), as documented
SCIFACT_COUNTS = {"excerpt": (419, (172, 150), (60, 50)), "full": (5183, (803, 709), (116, 100))}


def check_counts(tables: Path, corpus: int, train: tuple, dev: tuple) -> None:
    assert sorted(p.name for p in tables.iterdir()) == [
        "corpus",
        "qrels-dev",
        "qrels-train",
        "queries-dev",
        "queries-train",
    ]
    assert read_manifest(tables / "corpus")["rows"] == corpus
    for split, (judgments, queries) in (("train", train), ("dev", dev)):
        qrels = read_table(tables / f"qrels-{split}")
        qids = set(qrels["qid"].to_pylist())
        assert (qrels.num_rows, len(qids)) == (judgments, queries)
        assert qrels.schema == QRELS
        # queries-{split} holds exactly the queries judged in that split
        table = read_table(tables / f"queries-{split}")
        assert table.num_rows == queries and set(table["qid"].to_pylist()) == qids


def test_scifact_excerpt_counts_match_its_readme(scifact_tables: Path) -> None:
    check_counts(scifact_tables, *SCIFACT_COUNTS["excerpt"])


def test_full_scifact_counts_match_readme(full_scifact_dir: Path, tmp_path: Path) -> None:
    prepare_beir(full_scifact_dir, tmp_path / "prepare")
    check_counts(tmp_path / "prepare", *SCIFACT_COUNTS["full"])
    assert len(list(read_beir_queries(full_scifact_dir / "queries.jsonl"))) == 809


def test_scifact_rows_are_the_file_rows(scifact_dir: Path, scifact_tables: Path) -> None:
    corpus = read_table(scifact_tables / "corpus")
    first = corpus.slice(0, 1).to_pylist()[0]
    assert first["pid"] == "4983"
    assert first["title"].startswith("Microstructural development of human newborn cerebral")
    assert first["text"].startswith("Alterations of the architecture of cerebral white matter")
    queries = list(read_beir_queries(scifact_dir / "queries.jsonl"))
    assert len(queries) == 200
    assert queries[0] == {
        "qid": "0",
        "text": "0-dimensional biomaterials lack inductive properties.",
    }
    train = read_table(scifact_tables / "qrels-train").slice(0, 1).to_pylist()
    assert train == [{"qid": "0", "pid": "31715818", "relevance": 1}]


def test_crlf_qrels_read_identically(scifact_dir: Path, scifact_tables: Path, tmp_path: Path):
    lf = scifact_dir / "qrels" / "train.tsv"
    assert b"\r\n" not in lf.read_bytes()  # the shared copy is LF; BEIR's own release is CRLF
    folder = tmp_path / "scifact-crlf"
    (folder / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (folder / name).symlink_to(scifact_dir / name)
    crlf = folder / "qrels" / "train.tsv"
    crlf.write_bytes(lf.read_bytes().replace(b"\n", b"\r\n"))
    assert list(read_beir_qrels(crlf)) == list(read_beir_qrels(lf))
    prepare_beir(folder, tmp_path / "out", splits=["train"])
    for name in ("qrels-train", "queries-train"):
        assert read_table(tmp_path / "out" / name).equals(read_table(scifact_tables / name))


# --- broken inputs: small real excerpts written to tmp_path, then corrupted ---------------------


@pytest.fixture()
def small_beir(scifact_dir: Path, tmp_path: Path) -> Path:
    """A tiny BEIR folder: 4 real dev judgments with their queries and documents."""
    qrels = head_lines(scifact_dir / "qrels" / "dev.tsv", 5)
    wanted = [line.decode().rstrip("\r\n").split("\t") for line in qrels[1:]]
    qids, pids = {q for q, _, _ in wanted}, {d for _, d, _ in wanted}
    folder = tmp_path / "small"
    write_lines(folder / "qrels" / "dev.tsv", qrels)
    for name, keep in (("corpus.jsonl", pids), ("queries.jsonl", qids)):
        with open(scifact_dir / name, "rb") as f:
            lines = [raw for raw in f if json.loads(raw)["_id"] in keep]
        write_lines(folder / name, lines)
    return folder


def test_small_folder_reads(small_beir: Path, tmp_path: Path) -> None:
    manifests = prepare_beir(small_beir, tmp_path / "out")
    assert manifests["qrels-dev"]["rows"] == 4
    assert read_table(tmp_path / "out" / "qrels-dev")["relevance"].type == pa.int32()


def _fails(folder: Path, out: Path, **options) -> DataError:
    with pytest.raises(DataError) as info:
        prepare_beir(folder, out, **options)
    assert not out.exists(), "a failed prepare must leave no output folder"
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())
    return info.value


def _edit_line(path: Path, lineno: int, new: bytes | None) -> None:
    lines = path.read_bytes().split(b"\n")
    if new is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = new
    path.write_bytes(b"\n".join(lines))


def test_broken_json_line(small_beir: Path, tmp_path: Path) -> None:
    corpus = small_beir / "corpus.jsonl"
    line2 = corpus.read_bytes().split(b"\n")[1]
    _edit_line(corpus, 2, line2[: len(line2) // 2])
    err = _fails(small_beir, tmp_path / "out")
    check_error(err, corpus, 2)
    assert "broken JSON" in str(err)


def test_missing_field(small_beir: Path, tmp_path: Path) -> None:
    corpus = small_beir / "corpus.jsonl"
    doc = json.loads(corpus.read_bytes().split(b"\n")[1])
    del doc["text"]
    _edit_line(corpus, 2, json.dumps(doc).encode())
    check_error(_fails(small_beir, tmp_path / "out"), corpus, 2, "text")


def test_missing_title_reads_as_empty(small_beir: Path) -> None:
    corpus = small_beir / "corpus.jsonl"
    doc = json.loads(corpus.read_bytes().split(b"\n")[0])
    del doc["title"]
    _edit_line(corpus, 1, json.dumps(doc).encode())
    assert next(read_beir_corpus(corpus))["title"] == ""


def test_missing_qrels_column(small_beir: Path, tmp_path: Path) -> None:
    qrels = small_beir / "qrels" / "dev.tsv"
    _edit_line(qrels, 1, b"query-id\tcorpus-id")
    check_error(_fails(small_beir, tmp_path / "out"), qrels, 1, "score")


def test_missing_qrels_field(small_beir: Path, tmp_path: Path) -> None:
    qrels = small_beir / "qrels" / "dev.tsv"
    qid, pid, _ = qrels.read_bytes().split(b"\n")[2].split(b"\t")
    _edit_line(qrels, 3, qid + b"\t" + pid)
    check_error(_fails(small_beir, tmp_path / "out"), qrels, 3, "score")


def test_non_integer_score(small_beir: Path, tmp_path: Path) -> None:
    qrels = small_beir / "qrels" / "dev.tsv"
    qid, pid, _ = qrels.read_bytes().split(b"\n")[3].split(b"\t")
    _edit_line(qrels, 4, qid + b"\t" + pid + b"\t1.5")
    err = _fails(small_beir, tmp_path / "out")
    check_error(err, qrels, 4, "score")
    assert "'1.5'" in str(err)


def test_unknown_corpus_id(small_beir: Path, tmp_path: Path) -> None:
    corpus = small_beir / "corpus.jsonl"
    gone = json.loads(corpus.read_bytes().split(b"\n")[0])["_id"]
    _edit_line(corpus, 1, None)
    qrels = small_beir / "qrels" / "dev.tsv"
    lineno = next(
        n for n, line in enumerate(qrels.read_text().splitlines(), 1) if line.split("\t")[1] == gone
    )
    err = _fails(small_beir, tmp_path / "out")
    check_error(err, qrels, lineno, "corpus-id")
    assert repr(gone) in str(err)
    manifests = prepare_beir(small_beir, tmp_path / "out", on_unknown_id="skip")
    assert manifests["qrels-dev"]["rows"] == 4 - sum(
        line.split("\t")[1] == gone for line in qrels.read_text().splitlines()
    )


def test_unknown_query_id(small_beir: Path, tmp_path: Path) -> None:
    qrels = small_beir / "qrels" / "dev.tsv"
    _, pid, score = qrels.read_bytes().split(b"\n")[1].split(b"\t")
    _edit_line(qrels, 2, b"no-such-query\t" + pid + b"\t" + score)
    check_error(_fails(small_beir, tmp_path / "out"), qrels, 2, "query-id")


def test_duplicate_ids(small_beir: Path, tmp_path: Path) -> None:
    queries = small_beir / "queries.jsonl"
    lines = queries.read_bytes().splitlines(keepends=True)
    write_lines(queries, lines + lines[:1])
    check_error(_fails(small_beir, tmp_path / "out"), queries, len(lines) + 1, "_id")
    manifests = prepare_beir(small_beir, tmp_path / "out", on_duplicate="keep_first")
    assert manifests["queries-dev"]["rows"] == len(lines)


def test_duplicate_judgment(small_beir: Path, tmp_path: Path) -> None:
    qrels = small_beir / "qrels" / "dev.tsv"
    lines = qrels.read_bytes().splitlines(keepends=True)
    write_lines(qrels, lines + lines[1:2])
    check_error(_fails(small_beir, tmp_path / "out"), qrels, 6, "corpus-id")


def test_empty_file(small_beir: Path, tmp_path: Path) -> None:
    queries = small_beir / "queries.jsonl"
    queries.write_bytes(b"")
    err = _fails(small_beir, tmp_path / "out")
    check_error(err, queries, None)
    assert "empty file" in str(err)


def test_header_only_qrels_is_empty(small_beir: Path, tmp_path: Path) -> None:
    qrels = small_beir / "qrels" / "dev.tsv"
    write_lines(qrels, head_lines(qrels, 1))
    assert "empty file" in str(_fails(small_beir, tmp_path / "out"))


def test_non_utf8_byte(small_beir: Path, tmp_path: Path) -> None:
    corpus = small_beir / "corpus.jsonl"
    line3 = corpus.read_bytes().split(b"\n")[2]
    _edit_line(corpus, 3, line3[:20] + b"\xe9" + line3[20:])
    err = _fails(small_beir, tmp_path / "out")
    check_error(err, corpus, 3)
    assert "not valid UTF-8 (byte 0xe9 at column 21)" in str(err)


def test_late_failure_leaves_no_table(small_beir: Path, tmp_path: Path) -> None:
    """The corpus and the dev tables are fine; a broken second split still leaves nothing."""
    bad = small_beir / "qrels" / "test.tsv"
    write_lines(bad, ["query-id\tcorpus-id\tscore", "x\ty\tz"])
    _fails(small_beir, tmp_path / "out")
    # an earlier good output stays as it was
    prepare_beir(small_beir, tmp_path / "out", splits=["dev"])
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    with pytest.raises(DataError):
        prepare_beir(small_beir, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before


def test_bad_policy_name(small_beir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_duplicate"):
        prepare_beir(small_beir, tmp_path / "out", on_duplicate="keep_last")
