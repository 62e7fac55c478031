import pyarrow as pa
import pytest

from retrieval.tables import EXAMPLES, DataError, read_table
from retrieval.training.collators import pick_passages
from retrieval.training.examples import ResolvedExamples, examples_from_qrels, resolve_examples


def test_examples_from_qrels_match_the_qrels(scifact_tables):
    examples = examples_from_qrels(scifact_tables, "train")
    assert examples.num_rows == 709  # every judged train query
    assert sum(len(p) for p in examples["positives"].to_pylist()) == 803
    queries = read_table(scifact_tables / "queries-train")
    text = dict(zip(queries["qid"].to_pylist(), queries["text"].to_pylist()))
    first = examples.slice(0, 1).to_pylist()[0]
    assert first["query"] == text[first["qid"]] and first["negatives"] == []


def test_resolved_rows_point_at_the_same_passages(scifact_tables, tmp_path):
    examples = examples_from_qrels(scifact_tables, "train").slice(0, 50)
    resolve_examples(examples, scifact_tables / "corpus", tmp_path / "resolved", "test")
    resolved = ResolvedExamples(tmp_path / "resolved")
    corpus_pids = read_table(scifact_tables / "corpus", columns=["pid"])["pid"].to_pylist()
    for want, rows in zip(examples["positives"].to_pylist(), resolved.positives):
        assert [corpus_pids[r] for r in rows] == want


def test_unknown_pid_is_one_line_error_and_writes_nothing(scifact_tables, tmp_path):
    bad = pa.Table.from_pylist(
        [{"qid": "q", "query": "x", "positives": ["no-such-doc"], "negatives": []}], schema=EXAMPLES
    )
    with pytest.raises(DataError, match="pid 'no-such-doc' is not in the corpus") as err:
        resolve_examples(bad, scifact_tables / "corpus", tmp_path / "resolved", "ex.parquet")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "resolved").exists()


def test_pick_passages_positive_first_then_distinct_negatives():
    import numpy as np

    rng = np.random.default_rng(0)
    rows = pick_passages(rng, np.array([5]), np.array([1, 2, 3]), 3, corpus=100)
    assert rows[0] == 5 and sorted(rows[1:]) == [1, 2, 3]
    rows = pick_passages(rng, np.array([5]), np.array([], dtype=np.int64), 4, corpus=100)
    assert len(rows) == 5 and all(0 <= r < 100 for r in rows[1:])
