"""The cross-encoder (re-ranker): one relevance logit for ``[CLS] query [SEP] title passage``.

A plain HF sequence-classification model with one label, so the saved folder also loads in
``sentence_transformers.CrossEncoder``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from retrieval.models.dual_encoder import passage_text

SETTINGS_FILE = "rqa_cross_encoder.json"


@dataclass
class CrossEncoderSettings:
    max_len: int = 256


class CrossEncoder(nn.Module):
    """Scores (query, passage) pairs jointly; higher logit means more relevant."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        settings: CrossEncoderSettings | None = None,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or CrossEncoderSettings()

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides) -> CrossEncoder:
        """Load a saved cross-encoder, or start one from any HF encoder (a new 1-logit head)."""
        own = Path(path) / SETTINGS_FILE
        saved = json.loads(own.read_text()) if own.is_file() else {}
        settings = CrossEncoderSettings(**{**saved, **overrides})
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
        return cls(model, AutoTokenizer.from_pretrained(str(path)), settings)

    def tokenize(
        self, queries: list[str], titles: list[str | None], texts: list[str]
    ) -> dict[str, torch.Tensor]:
        passages = [passage_text(a, b) for a, b in zip(titles, texts)]
        encoded = self.tokenizer(
            queries,
            passages,
            padding=True,
            truncation="longest_first",
            max_length=self.settings.max_len,
            return_tensors="pt",
        )
        return dict(encoded)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``[batch]`` for tokenized pairs."""
        return self.model(**inputs, return_dict=True).logits.squeeze(-1)

    def save(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / SETTINGS_FILE).write_text(json.dumps(asdict(self.settings), indent=2))
