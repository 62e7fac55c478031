"""Arrow schemas of the tables that stages hand to each other (see docs/architecture.md).

Ids are strings everywhere, so MS MARCO's integer ids and BEIR's string ids share one code path.
"""

from __future__ import annotations

import pyarrow as pa

CORPUS = pa.schema([("pid", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERIES = pa.schema([("qid", pa.string()), ("text", pa.string())])
QRELS = pa.schema([("qid", pa.string()), ("pid", pa.string()), ("relevance", pa.int32())])
ANSWERS = pa.schema([("qid", pa.string()), ("answers", pa.list_(pa.string()))])
EXAMPLES = pa.schema(
    [
        ("qid", pa.string()),
        ("query", pa.string()),
        ("positives", pa.list_(pa.string())),
        ("negatives", pa.list_(pa.string())),
    ]
)
# Examples with a teacher's (the re-ranker's) score of each positive and each negative, in the
# lists' order: what denoise writes and MarginMSE distils (retrieval/losses/margin_mse.py).
TEACHER_SCORES = (
    pa.field("positive_scores", pa.list_(pa.float32())),
    pa.field("negative_scores", pa.list_(pa.float32())),
)
SCORED_EXAMPLES = pa.schema([*EXAMPLES, *TEACHER_SCORES])
CANDIDATES = pa.schema(
    [("qid", pa.string()), ("pids", pa.list_(pa.string())), ("scores", pa.list_(pa.float32()))]
)


def embeddings_schema(dim: int, dtype: str = "float32") -> pa.Schema:
    """Schema of an embeddings table: one fixed-size vector per passage."""
    value_type = {"float32": pa.float32(), "float16": pa.float16()}[dtype]
    return pa.schema([("pid", pa.string()), ("vector", pa.list_(value_type, dim))])
