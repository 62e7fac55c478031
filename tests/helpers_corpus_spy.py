"""`python -m tests.helpers_corpus_spy LOG ARGS...`: `rqa ARGS...` as ``python -m pipelines.cli``
runs it, with spies on the corpus embeddings of a pipeline run. One JSON line goes to LOG for

- every corpus encoding (each call of ``encode_corpus_table`` from any stage module):
  ``{"event": "encode", "stage", "model", "table", "digest"}``, after the table is written;
- every search of a corpus table by the evaluate stage (its ``search_table``):
  ``{"event": "search", "stage", "queries", "table", "digest"}``, before it is read;

where ``digest`` maps each file of the table to its sha256. The spied functions still run,
with the same arguments: the spies only watch.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import pkgutil
import sys
from pathlib import Path

import pipelines.stages
from pipelines import cli, runner
from pipelines.inference import steps
from pipelines.stages import evaluate


def table_digest(folder: str | Path) -> dict[str, str]:
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def install(log: Path) -> None:
    stage = {"name": None}

    def record(entry: dict) -> None:
        with log.open("a", encoding="utf-8") as out:
            out.write(json.dumps({**entry, "stage": stage["name"]}) + "\n")

    real_run_stage = runner.run_stage

    @functools.wraps(real_run_stage)
    def run_stage(config, run_dir, name, *args, **kwargs):
        stage["name"] = name
        try:
            return real_run_stage(config, run_dir, name, *args, **kwargs)
        finally:
            stage["name"] = None

    real_encode = steps.encode_corpus_table

    @functools.wraps(real_encode)
    def encode_corpus_table(model_dir, corpus, out, *args, **kwargs):
        result = real_encode(model_dir, corpus, out, *args, **kwargs)
        record({"event": "encode", "model": str(model_dir), "table": str(out),
                "digest": table_digest(out)})  # fmt: skip
        return result

    real_search = evaluate.search_table

    @functools.wraps(real_search)
    def search_table(query_vectors, embeddings_dir, *args, **kwargs):
        record({"event": "search", "queries": str(query_vectors), "table": str(embeddings_dir),
                "digest": table_digest(embeddings_dir)})  # fmt: skip
        return real_search(query_vectors, embeddings_dir, *args, **kwargs)

    runner.run_stage = run_stage
    evaluate.search_table = search_table
    for info in pkgutil.iter_modules(pipelines.stages.__path__, "pipelines.stages."):
        module = importlib.import_module(info.name)
        if getattr(module, "encode_corpus_table", None) is real_encode:
            module.encode_corpus_table = encode_corpus_table


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    sys.exit(cli.main(sys.argv[2:]))
