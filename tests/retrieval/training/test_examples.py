import pyarrow as pa
import pytest

from retrieval.tables import EXAMPLES, DataError, read_table
from retrieval.training.collators import pick_passages
from retrieval.training.examples import ResolvedExamples, examples_from_qrels, resolve_examples


def test_examples_from_qrels_match_the_qrels(scifact_tables):
    examples = examples_from_qrels(scifact_tables, "train")
    # every judged train query of the excerpt, with every judgment (tests/data/README.md)
    assert examples.num_rows == 150
    assert sum(len(p) for p in examples["positives"].to_pylist()) == 172
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
    empty = np.array([], dtype=np.int64)
    rows = pick_passages(rng, np.array([5]), empty, 4, corpus=100, random_negatives=True)
    assert len(rows) == 5 and all(0 <= r < 100 for r in rows[1:])


def test_an_example_without_negatives_is_an_error_unless_random_negatives_is_chosen():
    import numpy as np
    import pytest

    rng = np.random.default_rng(0)
    empty = np.array([], dtype=np.int64)
    with pytest.raises(ValueError, match="random_negatives"):
        pick_passages(rng, np.array([5]), empty, 2, corpus=100)
    assert pick_passages(rng, np.array([5]), empty, 0, corpus=100) == [5]  # none needed


def test_examples_without_negatives_are_refused_before_training_unless_chosen(scifact_tables):
    import pytest

    from retrieval.errors import ConfigError
    from retrieval.training.config import validate_train_config
    from retrieval.training.negatives import check_negatives

    base = {"model": "m", "output_dir": "out", "data": {"tables": str(scifact_tables)}}
    qrels_only = validate_train_config({**base, "hard_negatives": 1})
    with pytest.raises(ConfigError, match=r"examples have no negatives .*random_negatives: true"):
        check_negatives(qrels_only)
    chosen = qrels_only.model_copy(update={"random_negatives": True})
    assert check_negatives(chosen) == len(set(read_qrels_qids(scifact_tables)))
    assert check_negatives(qrels_only.model_copy(update={"hard_negatives": 0})) == 0


def read_qrels_qids(tables):
    from retrieval.tables.store import read_table

    return read_table(tables / "qrels-train")["qid"].to_pylist()
