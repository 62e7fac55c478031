"""The dual encoder: query and passage towers over an HF encoder, pooled to one vector each.

Scores are inner products (optionally of L2-normalised vectors) divided by a temperature.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from retrieval.models.pooling import POOLING_MODES, pool
from retrieval.models.st_format import read_st_settings, write_st_files

logger = logging.getLogger(__name__)
SETTINGS_FILE = "rqa_dual_encoder.json"


@dataclass
class DualEncoderSettings:
    """How a dual encoder turns text into vectors and vectors into scores.

    ``similarity='cosine'`` normalises inside the score; ``normalize=True`` also normalises
    the vectors that are written to an index, so inner-product search is cosine search.
    """

    pooling: str = "mean"
    normalize: bool = True
    similarity: str = "cosine"
    temperature: float = 0.05
    shared: bool = True
    query_max_len: int = 64
    passage_max_len: int = 256
    query_prefix: str = ""
    passage_prefix: str = ""

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling '{self.pooling}' is not one of {', '.join(POOLING_MODES)}")
        if self.similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity '{self.similarity}' is not one of dot, cosine")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def passage_text(title: str | None, text: str) -> str:
    """One string per passage, as BEIR does: title, a space, body."""
    return f"{title} {text}".strip() if title else text.strip()


class DualEncoder(nn.Module):
    """Shared or separate query/passage towers; ``encode_*`` returns pooled vectors."""

    def __init__(
        self,
        query_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        settings: DualEncoderSettings,
        passage_model: nn.Module | None = None,
    ):
        super().__init__()
        self.query_model = query_model
        self.passage_model = passage_model if passage_model is not None else query_model
        self.tokenizer = tokenizer
        self.settings = settings

    @property
    def dim(self) -> int:
        return self.query_model.config.hidden_size

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides) -> DualEncoder:
        """Load a saved RQA model, a sentence-transformers folder or any HF encoder (path or id).

        Settings come from, in order: ``overrides``, the folder's own RQA settings file, its
        sentence-transformers files, then the defaults.
        """
        folder = Path(path)
        saved = _saved_settings(folder) if folder.is_dir() else {}
        names = {f.name for f in fields(DualEncoderSettings)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown dual encoder settings: {', '.join(sorted(unknown))}")
        settings = DualEncoderSettings(**{**saved, **overrides})
        if not settings.shared and (folder / "query_encoder").is_dir():
            query = AutoModel.from_pretrained(folder / "query_encoder")
            passage = AutoModel.from_pretrained(folder / "passage_encoder")
            tokenizer = AutoTokenizer.from_pretrained(folder / "query_encoder")
            return cls(query, tokenizer, settings, passage)
        query = AutoModel.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        passage = None if settings.shared else AutoModel.from_pretrained(str(path))
        return cls(query, tokenizer, settings, passage)

    def _embed(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        needs_layers = self.settings.pooling == "first_last_avg"
        out = model(**inputs, output_hidden_states=needs_layers, return_dict=True)
        hidden = out.hidden_states if needs_layers else None
        vectors = pool(
            self.settings.pooling, out.last_hidden_state, inputs["attention_mask"], hidden
        )
        if self.settings.normalize:
            vectors = nn.functional.normalize(vectors, dim=-1)
        return vectors

    def encode_query(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._embed(self.query_model, inputs)

    def encode_passage(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._embed(self.passage_model, inputs)

    def forward(
        self, query_inputs: dict[str, torch.Tensor], passage_inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_query(query_inputs), self.encode_passage(passage_inputs)

    def score(self, queries: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
        """``[nq, dim] x [np, dim] -> [nq, np]`` similarity divided by the temperature."""
        if self.settings.similarity == "cosine":
            queries = nn.functional.normalize(queries, dim=-1)
            passages = nn.functional.normalize(passages, dim=-1)
        return queries @ passages.T / self.settings.temperature

    def score_lists(self, queries: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """``[nq, dim] x [nq, n, dim] -> [nq, n]``: each query against its own list only."""
        if self.settings.similarity == "cosine":
            queries = nn.functional.normalize(queries, dim=-1)
            lists = nn.functional.normalize(lists, dim=-1)
        return torch.einsum("qd,qnd->qn", queries, lists) / self.settings.temperature

    def tokenize_queries(self, texts: list[str]) -> dict[str, torch.Tensor]:
        texts = [self.settings.query_prefix + t for t in texts]
        return self._tokenize(texts, self.settings.query_max_len)

    def tokenize_passages(self, titles: list[str | None], texts: list[str]) -> dict:
        joined = [self.settings.passage_prefix + passage_text(a, b) for a, b in zip(titles, texts)]
        return self._tokenize(joined, self.settings.passage_max_len)

    def _tokenize(self, texts: list[str], max_len: int) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            )
        )

    def save(self, path: str | Path) -> None:
        """Save HF weights, tokenizer, RQA settings and sentence-transformers files."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        towers = {"": self.query_model}
        if not self.settings.shared:
            towers = {"query_encoder": self.query_model, "passage_encoder": self.passage_model}
        for sub, model in towers.items():
            target = folder / sub if sub else folder
            target.mkdir(exist_ok=True)
            model.save_pretrained(target)
            self.tokenizer.save_pretrained(target)
            max_len = self.settings.passage_max_len
            if sub == "query_encoder":
                max_len = self.settings.query_max_len
            exported = write_st_files(
                target,
                self.settings.pooling,
                self.settings.normalize,
                max_len,
                self.dim,
                self.settings.similarity,
            )
            if not exported:
                logger.warning(
                    "pooling %s has no sentence-transformers twin", self.settings.pooling
                )
        (folder / SETTINGS_FILE).write_text(json.dumps(asdict(self.settings), indent=2))


def _saved_settings(folder: Path) -> dict:
    own = folder / SETTINGS_FILE
    if own.is_file():
        return json.loads(own.read_text())
    st = read_st_settings(folder)
    settings = {k: st[k] for k in ("pooling", "normalize") if k in st}
    if "max_seq_length" in st:  # sentence-transformers truncates queries and passages alike
        settings["passage_max_len"] = settings["query_max_len"] = st["max_seq_length"]
    return settings
