"""Vector indexes over passage embeddings: faiss indexes chosen by a factory string.

Also building them from embeddings tables, and searching several shards as one global top-k.
"""

from retrieval.indexing.faiss_index import METRICS, FaissIndex, sample_rows
from retrieval.indexing.from_table import (
    index_from_table,
    iter_embeddings,
    read_embeddings,
    sample_table,
    table_dim,
)
from retrieval.indexing.sharded_search import TopK, search_shards, search_tables
from retrieval.indexing.vectors import arrow_to_matrix, as_matrix

__all__ = [
    "METRICS",
    "FaissIndex",
    "TopK",
    "arrow_to_matrix",
    "as_matrix",
    "index_from_table",
    "iter_embeddings",
    "read_embeddings",
    "sample_rows",
    "sample_table",
    "search_shards",
    "search_tables",
    "table_dim",
]
