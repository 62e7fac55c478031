"""DPR NQ readers on the real qa.csv files and the 5-record biencoder sample.

The default tests read the excerpts in tests/data/fixtures (facts in its README.md: the first
200 qa.csv lines plus every csv-quoted one, CRLF; the 5 biencoder records with all positives,
30 hard negatives, 10 negatives). The tests of whole-file facts (../shared/fixtures/nq_dpr_qa/
README.txt and nq_dpr_biencoder_sample/README.txt) take ``full_fixtures_dir`` and skip without
../shared.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import retrieval.tables.readers.json_stream as json_stream
from retrieval.tables import ANSWERS, DataError, read_table
from retrieval.tables.readers import prepare_nq
from retrieval.tables.readers.dpr_nq import read_dpr_biencoder, read_dpr_passages, read_dpr_qa
from tests.retrieval.reader_checks import check_error, head_lines, write_lines

FULL_SAMPLE = Path("nq_dpr_biencoder_sample") / "biencoder-nq-dev.sample5.json"


@pytest.fixture(scope="module")
def qa_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "nq_dpr_qa"


@pytest.fixture(scope="module")
def qa_test(qa_dir: Path) -> Path:
    return qa_dir / "nq-test.qa.excerpt.csv"


@pytest.fixture(scope="module")
def qa_dev(qa_dir: Path) -> Path:
    return qa_dir / "nq-dev.qa.excerpt.csv"


@pytest.fixture(scope="module")
def sample(fixtures_dir: Path) -> Path:
    return fixtures_dir / "nq_dpr_biencoder_sample" / "nq-biencoder-dev.sample5.excerpt.json"


def _check_qa(test_file: Path, dev_file: Path, counts: tuple[int, int]) -> None:
    """``counts`` = (test, dev) questions; the first rows, CRLF and the csv-quoted answer lists
    (77 test lines, e.g. "['Solange Knowles', ""Destiny 's Child""]") read right."""
    test = list(read_dpr_qa(test_file, "test"))
    dev = list(read_dpr_qa(dev_file, "dev"))
    assert (len(test), len(dev)) == counts
    lines = test_file.read_bytes().splitlines(keepends=True)
    assert len(lines) == counts[0] and all(line.endswith(b"\r\n") for line in lines)
    assert sum(line.split(b"\t", 1)[1].startswith(b'"') for line in lines) == 77
    assert [row["qid"] for row in test[:2]] == ["test-0", "test-1"]
    assert test[0]["text"] == "who got the first nobel prize in physics"
    assert test[0]["answers"] == ["Wilhelm Conrad Röntgen"]
    proud = next(
        row for row in test if row["text"] == "who sings the theme song for the proud family"
    )
    assert proud["answers"] == ["Solange Knowles", "Destiny 's Child"]
    assert dev[0]["text"] == "who sings does he love me with reba"
    assert dev[0]["answers"] == ["Linda Davis"]


def test_qa_csv_excerpt_counts_and_quoting(qa_test: Path, qa_dev: Path) -> None:
    _check_qa(qa_test, qa_dev, (273, 349))  # the excerpt keeps every quoted line


def test_qa_csv_counts_and_quoting(full_fixtures_dir: Path) -> None:
    qa = full_fixtures_dir / "nq_dpr_qa"
    _check_qa(qa / "nq-test.qa.csv", qa / "nq-dev.qa.csv", (3610, 8757))


def _check_biencoder(sample: Path, hard: list[int], negatives: int) -> None:
    records = list(read_dpr_biencoder(sample))
    assert [len(r.positive_ctxs) for r in records] == [5, 6, 3, 1, 7]
    assert [len(r.hard_negative_ctxs) for r in records] == hard
    assert [len(r.negative_ctxs) for r in records] == [negatives] * 5
    assert records[0].question == "who sings does he love me with reba"
    assert records[0].answers == ["Linda Davis"]
    assert records[0].positive_ctxs[0]["pid"] == "11828866"
    assert records[0].positive_ctxs[0]["title"] == "Does He Love You"


def test_biencoder_sample_excerpt(sample: Path) -> None:
    _check_biencoder(sample, [30, 32, 30, 30, 31], 10)


def test_biencoder_sample(full_fixtures_dir: Path) -> None:
    _check_biencoder(full_fixtures_dir / FULL_SAMPLE, [96, 95, 98, 100, 94], 50)


def test_biencoder_streamed_in_tiny_chunks(sample: Path, monkeypatch) -> None:
    """Records that span many read chunks parse exactly as ``json.load`` reads them."""
    reference = json.loads(sample.read_text(encoding="utf-8"))
    monkeypatch.setattr(json_stream, "CHUNK_BYTES", 1000)
    records = list(json_stream.iter_json_array(sample))
    assert [obj for _, _, obj in records] == reference


def _check_prepare_nq(
    qa_dev: Path, qa_test: Path, sample: Path, out: Path, counts: tuple[int, int]
) -> None:
    """``counts`` = (dev, test) questions of the qa files."""
    manifests = prepare_nq(out, qa={"dev": qa_dev, "test": qa_test}, biencoder={"dev": sample})
    rows = {name: m["rows"] for name, m in manifests.items()}
    assert rows["queries-dev"] == rows["answers-dev"] == counts[0]
    assert rows["queries-test"] == rows["answers-test"] == counts[1]
    answers = read_table(out / "answers-test")
    assert answers.schema == ANSWERS
    examples = read_table(out / "examples-dev").to_pylist()
    # the sample's questions are among the first rows of nq-dev.qa.csv: they get those qids
    qids = {row["text"]: row["qid"] for row in read_dpr_qa(qa_dev, "dev")}
    records = list(read_dpr_biencoder(sample))
    assert [ex["qid"] for ex in examples] == [qids[r.question] for r in records]
    assert examples[0]["qid"] == "dev-0"
    for ex, record in zip(examples, records):
        # DPR repeats a positive when retrieval found the gold passage again: kept once
        assert ex["positives"] == list(dict.fromkeys(c["pid"] for c in record.positive_ctxs))
        hard = [c["pid"] for c in record.hard_negative_ctxs]
        assert ex["negatives"][: len(hard)] == hard  # hard negatives come first
        assert len(ex["negatives"]) == len(hard) + len(record.negative_ctxs)
    corpus = read_table(out / "corpus")
    every = {c["pid"] for r in records for c in r.ctxs()}
    assert corpus.num_rows == len(every) == len(set(corpus["pid"].to_pylist()))


def test_prepare_nq_links_biencoder_to_qa(
    qa_dev: Path, qa_test: Path, sample: Path, tmp_path: Path
) -> None:
    _check_prepare_nq(qa_dev, qa_test, sample, tmp_path / "out", (349, 273))


def test_prepare_nq_links_full_files(full_fixtures_dir: Path, tmp_path: Path) -> None:
    qa = full_fixtures_dir / "nq_dpr_qa"
    sample = full_fixtures_dir / FULL_SAMPLE
    counts = (8757, 3610)
    _check_prepare_nq(qa / "nq-dev.qa.csv", qa / "nq-test.qa.csv", sample, tmp_path / "out", counts)


def test_biencoder_alone_gives_queries_and_answers(sample: Path, tmp_path: Path) -> None:
    prepare_nq(tmp_path / "out", biencoder={"dev": sample})
    queries = read_table(tmp_path / "out" / "queries-dev").to_pylist()
    assert [q["qid"] for q in queries] == [f"dev-{i}" for i in range(5)]
    answers = read_table(tmp_path / "out" / "answers-dev").to_pylist()
    assert answers[0] == {"qid": "dev-0", "answers": ["Linda Davis"]}


def _psgs_w100(path: Path, ctxs: list[dict]) -> Path:
    """A psgs_w100.tsv made of real ctxs, written the way DPR's file is (csv quoting)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        for ctx in ctxs:
            writer.writerow([ctx["pid"], ctx["text"], ctx["title"]])
    return path


def test_passages_file_is_the_corpus(sample: Path, tmp_path: Path) -> None:
    records = list(read_dpr_biencoder(sample))
    ctxs = list({c["pid"]: c for r in records for c in r.ctxs()}.values())
    passages = _psgs_w100(tmp_path / "psgs_w100.tsv", ctxs)
    assert b'""' in passages.read_bytes()  # real texts with quotes exercise the csv quoting
    assert list(read_dpr_passages(passages)) == ctxs
    prepare_nq(tmp_path / "out", passages=passages, biencoder={"dev": sample})
    assert read_table(tmp_path / "out" / "corpus").num_rows == len(ctxs)
    # a biencoder passage missing from psgs_w100 is an unknown id
    missing = records[2].positive_ctxs[1]["pid"]
    _psgs_w100(passages, [c for c in ctxs if c["pid"] != missing])
    err = _fails(tmp_path / "out2", passages=passages, biencoder={"dev": sample})
    check_error(err, sample, 1, "passage_id")
    assert repr(missing) in str(err)
    prepare_nq(
        tmp_path / "out2", passages=passages, biencoder={"dev": sample}, on_unknown_id="skip"
    )
    examples = read_table(tmp_path / "out2" / "examples-dev").to_pylist()
    assert records[2].positive_ctxs[0]["pid"] != missing
    assert missing not in examples[2]["positives"]
    assert examples[2]["positives"] == [records[2].positive_ctxs[0]["pid"]]


# --- broken inputs --------------------------------------------------------------------------


def _fails(out: Path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        prepare_nq(out, **kwargs)
    assert not out.exists()
    return info.value


def test_qa_bad_answer_list(qa_test: Path, tmp_path: Path) -> None:
    lines = head_lines(qa_test, 5)
    lines[3] = lines[3].replace(b"']", b"'", 1)
    qa = write_lines(tmp_path / "qa.csv", lines)
    check_error(_fails(tmp_path / "out", qa={"test": qa}), qa, 4, "answers")


def test_qa_missing_answers(qa_test: Path, tmp_path: Path) -> None:
    lines = head_lines(qa_test, 5)
    lines[1] = lines[1].split(b"\t")[0] + b"\r\n"
    qa = write_lines(tmp_path / "qa.csv", lines)
    check_error(_fails(tmp_path / "out", qa={"test": qa}), qa, 2, "answers")


def test_qa_line_numbers_after_quoted_rows(qa_test: Path, tmp_path: Path) -> None:
    lines = head_lines(qa_test, 40)
    assert b'""Destiny' in lines[36]
    lines[38] = b"\xff" + lines[38]
    qa = write_lines(tmp_path / "qa.csv", lines)
    err = _fails(tmp_path / "out", qa={"test": qa})
    check_error(err, qa, 39)
    assert "not valid UTF-8 (byte 0xff at column 1)" in str(err)


def test_biencoder_missing_question(sample: Path, tmp_path: Path) -> None:
    records = json.loads(sample.read_text(encoding="utf-8"))[:3]
    del records[1]["question"]
    broken = tmp_path / "biencoder.json"
    broken.write_text(json.dumps(records, indent=4), encoding="utf-8")
    err = _fails(tmp_path / "out", biencoder={"train": broken})
    line = broken.read_text().split("\n").index("    {", 2) + 1  # where record 1 starts
    check_error(err, broken, line, "question")
    assert "record 1" in str(err)


def test_biencoder_missing_passage_id(sample: Path, tmp_path: Path) -> None:
    records = json.loads(sample.read_text(encoding="utf-8"))[:2]
    del records[1]["hard_negative_ctxs"][3]["passage_id"]
    broken = tmp_path / "biencoder.json"
    broken.write_text(json.dumps(records), encoding="utf-8")
    err = _fails(tmp_path / "out", biencoder={"train": broken})
    check_error(err, broken, 1, "passage_id")
    assert "hard_negative_ctxs[3]" in str(err)


def test_biencoder_truncated_and_empty(sample: Path, tmp_path: Path) -> None:
    broken = tmp_path / "biencoder.json"
    data = sample.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    err = _fails(tmp_path / "out", biencoder={"train": broken})
    check_error(err, broken, 1)
    assert "broken JSON" in str(err)
    broken.write_bytes(b"")
    assert "empty file" in str(_fails(tmp_path / "out", biencoder={"train": broken}))
    broken.write_bytes(b"[]\n")
    assert "empty file" in str(_fails(tmp_path / "out", biencoder={"train": broken}))


def test_duplicate_passage_id(sample: Path, tmp_path: Path) -> None:
    ctxs = list({c["pid"]: c for c in next(read_dpr_biencoder(sample)).ctxs()}.values())[:4]
    passages = _psgs_w100(tmp_path / "psgs.tsv", ctxs + ctxs[1:2])
    check_error(_fails(tmp_path / "out", passages=passages), passages, 6, "id")


def test_biencoder_non_utf8(sample: Path, tmp_path: Path) -> None:
    records = json.loads(sample.read_text(encoding="utf-8"))[:3]
    data = json.dumps(records, indent=2, ensure_ascii=False).encode("utf-8")
    cut = data.index(records[2]["question"].encode())
    broken = tmp_path / "biencoder.json"
    broken.write_bytes(data[:cut] + b"\xc3" + data[cut:])
    err = _fails(tmp_path / "out", biencoder={"train": broken})
    check_error(err, broken, data[:cut].count(b"\n") + 1)
    assert "not valid UTF-8" in str(err)
