"""RocketQA readers on the real example files of the RocketQA repository (examples/data/).

The default tests read the excerpts in tests/data/fixtures (facts in its README.md: marco.q and
dureader.q whole, the first 100 lines of marco.tp.1k, 40 of each training file, 15 of
dureader.para). The tests of whole-file facts (../shared/fixtures/rocketqa_examples/README.txt)
take ``full_fixtures_dir`` and skip without ../shared.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.tables import DataError, read_table
from retrieval.tables.readers import prepare_rocketqa
from retrieval.tables.readers.ids import text_pid, text_qid
from retrieval.tables.readers.msmarco import read_msmarco_queries
from retrieval.tables.readers.rocketqa import (
    read_rocketqa_cross,
    read_rocketqa_dual,
    read_rocketqa_passages,
    read_rocketqa_queries,
)
from tests.retrieval.reader_checks import check_error, head_lines, write_lines

# the excerpts' names, and the full files' in ../shared/fixtures/rocketqa_examples
EXCERPT = {
    "passages": "marco.tp.excerpt",
    "dual": "dual.train.excerpt.tsv",
    "cross": "cross.train.excerpt.tsv",
    "dureader": "dureader.excerpt.para",
}
FULL = {
    "passages": "marco.tp.1k",
    "dual": "dual.train.tsv",
    "cross": "cross.train.tsv",
    "dureader": "dureader.para",
}


@pytest.fixture(scope="module")
def rq(fixtures_dir: Path) -> Path:
    return fixtures_dir / "rocketqa_examples"


@pytest.fixture(scope="module")
def files(rq: Path) -> dict[str, Path]:
    return {kind: rq / name for kind, name in EXCERPT.items()}


@pytest.fixture(scope="module")
def full_files(full_fixtures_dir: Path) -> dict[str, Path]:
    return {kind: full_fixtures_dir / "rocketqa_examples" / name for kind, name in FULL.items()}


def _tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n")[:-1]]


def _check_passages(path: Path, count: int) -> None:
    lines = _tsv(path)
    rows = list(read_rocketqa_passages(path))
    assert len(lines) == len(rows) == count  # distinct lines, so one passage each
    assert rows[0]["title"] == "Paula Deen & Brother Bubba Sued for Harassment"
    assert rows[0]["pid"] == text_pid(rows[0]["text"], rows[0]["title"])
    untitled = [row for row, (title, _) in zip(rows, lines) if title == "-"]
    assert untitled and all(row["title"] == "" for row in untitled)
    assert rows[1]["text"].startswith("Brian Killian/WireImage. Paula Deen and her brother")
    assert rows[1] == {"pid": text_pid(lines[1][1]), "title": "", "text": lines[1][1]}


def test_passage_file_excerpt(files: dict[str, Path]) -> None:
    _check_passages(files["passages"], 100)


def test_passage_file(full_files: dict[str, Path]) -> None:
    _check_passages(full_files["passages"], 1000)  # 1,000 distinct lines, so 1,000 passages


def test_query_files(rq: Path, fixtures_dir: Path) -> None:
    marco = list(read_rocketqa_queries(rq / "marco.q"))
    assert len(marco) == 20
    assert marco[0] == {"qid": text_qid("what is paula deen's brother"), "text": marco[0]["text"]}
    dev_small = fixtures_dir / "msmarco_passage_dev_small" / "queries.dev.small.excerpt.tsv"
    # RocketQA's copy drops the leading space of " Androgen receptor define"
    known = {row["text"].strip() for row in read_msmarco_queries(dev_small)}
    assert all(row["text"] in known for row in marco)
    dureader = list(read_rocketqa_queries(rq / "dureader.q"))  # "query\t-\t-\t0" lines
    assert len(dureader) == 100
    assert dureader[0]["text"] == "国家法定节假日共多少天"


def _check_dual(path: Path, count: int) -> None:
    lines = _tsv(path)
    assert len(lines) == count and all(len(line) == 6 for line in lines)
    examples = list(read_rocketqa_dual(path))
    assert len(examples) == count
    query, t_pos, p_pos, t_neg, p_neg, _ = lines[0]
    assert examples[0] == {
        "qid": text_qid(query),
        "query": query,
        "positives": [text_pid(p_pos, t_pos)],
        "negatives": [text_pid(p_neg, t_neg)],
    }


def test_dual_training_file_excerpt(files: dict[str, Path]) -> None:
    _check_dual(files["dual"], 40)


def test_dual_training_file(full_files: dict[str, Path]) -> None:
    _check_dual(full_files["dual"], 100)


def _check_cross(path: Path, count: int) -> None:
    lines = _tsv(path)
    assert len(lines) == count and all(len(line) == 4 for line in lines)
    examples = list(read_rocketqa_cross(path))
    # consecutive lines of one query make one example
    runs = [q for i, (q, *_) in enumerate(lines) if i == 0 or lines[i - 1][0] != q]
    assert [ex["query"] for ex in examples] == runs
    positives = {text_pid(p, t if t != "-" else "") for _, t, p, label in lines if label == "1"}
    assert {pid for ex in examples for pid in ex["positives"]} == positives
    assert sum(len(ex["positives"]) + len(ex["negatives"]) for ex in examples) == len(
        {(q, t, p) for q, t, p, _ in lines}
    )


def test_cross_training_file_excerpt(files: dict[str, Path]) -> None:
    _check_cross(files["cross"], 40)


def test_cross_training_file(full_files: dict[str, Path]) -> None:
    _check_cross(full_files["cross"], 100)


def _check_prepare(files: dict[str, Path], queries: Path, out: Path, dual_rows: int) -> None:
    """``queries``: the folder of marco.q and dureader.q (whole in the excerpts)."""
    manifests = prepare_rocketqa(
        out,
        passages=[files["passages"], files["dureader"]],
        queries={"marco": queries / "marco.q", "dureader": queries / "dureader.q"},
        dual_train=files["dual"],
        cross_train=files["cross"],
    )
    assert manifests["queries-marco"]["rows"] == 20
    assert manifests["examples-train"]["rows"] == dual_rows
    corpus = read_table(out / "corpus")
    pids = corpus["pid"].to_pylist()
    assert len(pids) == len(set(pids))
    for name in ("examples-train", "examples-cross-train"):
        for ex in read_table(out / name).to_pylist():
            assert ex["qid"] == text_qid(ex["query"])
            assert set(ex["positives"] + ex["negatives"]) <= set(pids)


def test_prepare_rocketqa(files: dict[str, Path], rq: Path, tmp_path: Path) -> None:
    _check_prepare(files, rq, tmp_path / "out", 40)


def test_prepare_rocketqa_full_files(full_files: dict[str, Path], tmp_path: Path) -> None:
    _check_prepare(full_files, full_files["dual"].parent, tmp_path / "out", 100)


# --- broken inputs --------------------------------------------------------------------------


def _fails(out: Path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        prepare_rocketqa(out, **kwargs)
    assert not out.exists()
    return info.value


def test_dual_missing_field(files: dict[str, Path], tmp_path: Path) -> None:
    lines = head_lines(files["dual"], 6)
    lines[4] = b"\t".join(lines[4].split(b"\t")[:5]) + b"\n"
    dual = write_lines(tmp_path / "dual.tsv", lines)
    check_error(_fails(tmp_path / "out", dual_train=dual), dual, 5, "label")


def test_cross_bad_label(files: dict[str, Path], tmp_path: Path) -> None:
    lines = head_lines(files["cross"], 6)
    lines[2] = lines[2].rstrip(b"\n")[:-1] + b"yes\n"
    cross = write_lines(tmp_path / "cross.tsv", lines)
    check_error(_fails(tmp_path / "out", cross_train=cross), cross, 3, "label")


def test_passages_non_utf8_and_empty(files: dict[str, Path], tmp_path: Path) -> None:
    lines = head_lines(files["dureader"], 4)
    lines[1] = lines[1][:7] + lines[1][8:]  # cut a 3-byte Chinese character in half
    para = write_lines(tmp_path / "para.tsv", lines)
    err = _fails(tmp_path / "out", passages=[para])
    check_error(err, para, 2)
    assert "not valid UTF-8" in str(err)
    empty = write_lines(tmp_path / "empty.tsv", [])
    assert "empty file" in str(_fails(tmp_path / "out", passages=[files["passages"], empty]))


def test_passage_missing_text(files: dict[str, Path], tmp_path: Path) -> None:
    lines = head_lines(files["passages"], 3)
    lines[2] = lines[2].split(b"\t")[0] + b"\n"
    para = write_lines(tmp_path / "para.tsv", lines)
    check_error(_fails(tmp_path / "out", passages=para), para, 3, "passage")
