"""Arrow tables passed between stages: schemas, atomic sharded Parquet writing, manifests, readers.

Holds no model code; everything here is plain pyarrow.
"""

from retrieval.tables.errors import DataError
from retrieval.tables.schemas import (
    ANSWERS,
    CANDIDATES,
    CORPUS,
    EXAMPLES,
    QRELS,
    QUERIES,
    embeddings_schema,
)
from retrieval.tables.store import read_manifest, read_table, table_exists, write_table

__all__ = [
    "ANSWERS",
    "CANDIDATES",
    "CORPUS",
    "EXAMPLES",
    "QRELS",
    "QUERIES",
    "DataError",
    "embeddings_schema",
    "read_manifest",
    "read_table",
    "table_exists",
    "write_table",
]
