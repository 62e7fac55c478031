"""The README.md model card of an exported model folder: what Hugging Face model cards hold
(base model, training data, loss, the settings that matter, results, how to load it).

Written at export from the training config and summary; a pipeline run's report later fills
the evaluation section (between the markers) with that run's metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

EVAL_START, EVAL_END = "<!-- rqa:evaluation -->", "<!-- /rqa:evaluation -->"
NO_EVAL = "Not evaluated yet: `rqa evaluate --model THIS_FOLDER ...` or a pipeline run fills this."


def _usage(kind: str) -> str:
    if kind == "cross":
        return (
            "```python\nfrom sentence_transformers import CrossEncoder\n\n"
            'model = CrossEncoder("THIS_FOLDER")\n'
            'scores = model.predict([("a query", "a passage"), ("a query", "another one")])\n```'
        )
    return (
        "```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        'model = SentenceTransformer("THIS_FOLDER")\n'
        'vectors = model.encode(["a query", "a passage"])\n```\n\n'
        "or with RQA: `rqa evaluate --model THIS_FOLDER --beir DIR --split dev`."
    )


def card_text(kind: str, facts: dict[str, object], base_model: str, title: str) -> str:
    """The card of a ``kind`` ('dual' or 'cross') model; ``facts`` are the training settings."""
    tag = "text-ranking" if kind == "cross" else "sentence-similarity"
    settings = "\n".join(f"| {k} | `{json.dumps(v, default=str)}` |" for k, v in facts.items())
    return f"""---
library_name: sentence-transformers
base_model: {base_model}
pipeline_tag: {tag}
tags: [rqa, rocketqa, {"cross-encoder" if kind == "cross" else "dense-retrieval"}]
---

# {title}

A {"cross-encoder re-ranker" if kind == "cross" else "dual-encoder retriever"} trained with RQA
(RocketQA / RocketQAv2 recipe on Ray and DeepSpeed), starting from `{base_model}`.

## Training

| setting | value |
|---|---|
{settings}

## Evaluation

{EVAL_START}
{NO_EVAL}
{EVAL_END}

## Usage

{_usage(kind)}
"""


def set_evaluation(card: Path, text: str) -> None:
    """Replace the evaluation section of an existing card (written atomically)."""
    from retrieval.tables.store import write_text_atomic

    pattern = re.compile(re.escape(EVAL_START) + ".*?" + re.escape(EVAL_END), re.S)
    body = card.read_text(encoding="utf-8")
    updated = pattern.sub(lambda _: f"{EVAL_START}\n{text.strip()}\n{EVAL_END}", body, count=1)
    write_text_atomic(card, updated)
