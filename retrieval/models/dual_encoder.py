"""The dual encoder: query and passage towers over an HF encoder, pooled to one vector each.

text -> (prefix, template) -> tokens -> encoder -> pooling -> optional linear head (e.g.
BERT-whitening) -> optional L2 normalisation. Scores are inner products (optionally of
L2-normalised vectors) divided by a temperature.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from retrieval.models.pooling import AVERAGING_MODES, POOLING_MODES, exclude_prefix, pool
from retrieval.models.st_format import head_dir, read_dense, read_st_settings, write_st_files

logger = logging.getLogger(__name__)
SETTINGS_FILE = "rqa_dual_encoder.json"
# PromptBERT's best template for BERT (Jiang et al. 2022, table 1); [X] is the text.
PROMPTBERT_TEMPLATE = 'This sentence : "[X]" means [MASK] .'
SIDES = ("query", "passage")


@dataclass
class DualEncoderSettings:
    """How a dual encoder turns text into vectors and vectors into scores.

    ``similarity='cosine'`` normalises inside the score; ``normalize=True`` also normalises
    the vectors that are written to an index, so inner-product search is cosine search.

    ``query_prefix`` / ``passage_prefix`` are put before every text of that side (E5's
    ``"query: "``, BGE's instruction). With ``pool_prefix=False`` they are INSTRUCTOR-style
    instructions: the encoder reads them but the averaging pooling modes leave their tokens
    out (sentence-transformers' ``include_prompt=False``). ``pooling='prompt'`` puts each
    (prefixed) text in ``prompt_template`` at ``[X]`` and pools the state of its ``[MASK]``
    (PromptBERT); only the text is truncated, never the template.
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
    pool_prefix: bool = True
    prompt_template: str = PROMPTBERT_TEMPLATE

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling '{self.pooling}' is not one of {', '.join(POOLING_MODES)}")
        if not self.pool_prefix and self.pooling not in AVERAGING_MODES:
            raise ValueError(
                f"pool_prefix=False (instructions left out of pooling) needs an averaging "
                f"pooling ({', '.join(AVERAGING_MODES)}), not '{self.pooling}'"
            )
        if self.pooling == "prompt":
            _template_parts(self.prompt_template)
        if self.similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity '{self.similarity}' is not one of dot, cosine")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def _template_parts(template: str) -> tuple[str, str, str]:
    """``(before, between, after)``: the template is ``before [X] between [MASK] after``."""
    if template.count("[X]") != 1 or template.count("[MASK]") != 1:
        raise ValueError(f"prompt_template needs one [X] and one [MASK], got {template!r}")
    before, rest = template.split("[X]")
    if "[MASK]" not in rest:
        raise ValueError(f"prompt_template must put [MASK] after [X], got {template!r}")
    between, after = rest.split("[MASK]")
    return before, between, after


def _special_ends(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one text ([CLS] and [SEP])."""
    plain = {"return_attention_mask": False, "return_token_type_ids": False}
    full = tokenizer("a", **plain)["input_ids"]
    body = tokenizer("a", add_special_tokens=False, **plain)["input_ids"]
    for start in range(len(full) - len(body) + 1):
        if full[start : start + len(body)] == body:
            return full[:start], full[start + len(body) :]
    raise ValueError("cannot tell this tokenizer's special tokens apart from the text")


def passage_text(title: str | None, text: str) -> str:
    """One string per passage, as BEIR does: title, a space, body."""
    return f"{title} {text}".strip() if title else text.strip()


def pad_token_ids(ids: list[list[int]], pad_id: int, left: bool) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` padded to the longest row (as ``tokenizer.pad``)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, tokens in enumerate(ids):
        cols = slice(width - len(tokens), width) if left else slice(0, len(tokens))
        input_ids[row, cols] = torch.as_tensor(tokens, dtype=torch.long)
        mask[row, cols] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


class DenseHead(nn.Module):
    """``y = activation(x @ weight.T + bias)`` after pooling: BERT-whitening
    (:mod:`retrieval.whitening`, identity activation) or a sentence-transformers Dense module.

    Saved as sentence-transformers' Dense module, so ``SentenceTransformer(path)`` applies it.
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "identity"
    ):
        super().__init__()
        if activation not in ("identity", "tanh"):
            raise ValueError(f"head activation must be identity or tanh, got {activation!r}")
        out_features, in_features = weight.shape
        self.linear = nn.Linear(in_features, out_features, bias=bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            if bias is not None:
                self.linear.bias.copy_(bias)
        self.activation = activation

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x.to(self.linear.weight.dtype))
        return torch.tanh(y) if self.activation == "tanh" else y

    def export(self) -> tuple[torch.Tensor, torch.Tensor | None, str]:
        return self.linear.weight, self.linear.bias, self.activation

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


class DualEncoder(nn.Module):
    """Shared or separate query/passage towers; ``encode_*`` returns pooled vectors."""

    def __init__(
        self,
        query_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        settings: DualEncoderSettings,
        passage_model: nn.Module | None = None,
        head: DenseHead | None = None,
    ):
        super().__init__()
        self.query_model = query_model
        self.passage_model = passage_model if passage_model is not None else query_model
        self.tokenizer = tokenizer
        self.settings = settings
        self.head = head
        self._prefix_lengths: dict[str, int] = {}
        if settings.pooling == "prompt" and tokenizer.mask_token_id is None:
            raise ValueError("prompt pooling needs a tokenizer with a mask token")

    @property
    def dim(self) -> int:
        """The dimension of the vectors: the head's output, else the encoder's hidden size."""
        if self.head is not None:
            return self.head.out_features
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
            return cls(query, tokenizer, settings, passage, _load_head(folder / "query_encoder"))
        query = AutoModel.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        passage = None if settings.shared else AutoModel.from_pretrained(str(path))
        head = _load_head(folder) if folder.is_dir() else None
        return cls(query, tokenizer, settings, passage, head)

    def prefix_tokens(self, side: str) -> int:
        """Tokens a side's prefix takes at the start of a text, counting a leading special token
        such as [CLS] but not the closing one (sentence-transformers' ``prompt_length``).
        """
        if side not in self._prefix_lengths:
            prefix = self._side(side)[0]
            count = 0
            if prefix:
                ids = self.tokenizer(prefix)["input_ids"]
                count = len(ids) - (ids[-1] in self.tokenizer.all_special_ids)
            self._prefix_lengths[side] = count
        return self._prefix_lengths[side]

    def _embed(self, model: nn.Module, inputs: dict[str, torch.Tensor], side: str) -> torch.Tensor:
        needs_layers = self.settings.pooling == "first_last_avg"
        out = model(**inputs, output_hidden_states=needs_layers, return_dict=True)
        hidden = out.hidden_states if needs_layers else None
        mask = inputs["attention_mask"]
        if not self.settings.pool_prefix:
            mask = exclude_prefix(mask, self.prefix_tokens(side))
        vectors = pool(
            self.settings.pooling,
            out.last_hidden_state,
            mask,
            hidden,
            input_ids=inputs.get("input_ids"),
            mask_token_id=self.tokenizer.mask_token_id,
        )
        if self.head is not None:
            vectors = self.head(vectors)
        if self.settings.normalize:
            vectors = nn.functional.normalize(vectors, dim=-1)
        return vectors

    def encode_query(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._embed(self.query_model, inputs, "query")

    def encode_passage(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._embed(self.passage_model, inputs, "passage")

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

    def _side(self, side: str) -> tuple[str, int]:
        """``(prefix, max_len)`` of the ``query`` or ``passage`` side."""
        if side == "query":
            return self.settings.query_prefix, self.settings.query_max_len
        if side == "passage":
            return self.settings.passage_prefix, self.settings.passage_max_len
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")

    def token_ids(self, texts: list[str], side: str) -> list[list[int]]:
        """Token ids of ``texts`` as one ``side`` reads them: prefix, prompt template, special
        tokens, truncated to the side's max length (for ``prompt``, the text alone is cut).
        """
        if not texts:
            return []
        prefix, max_len = self._side(side)
        texts = [prefix + t for t in texts]
        tokenizer = self.tokenizer
        plain = {"return_attention_mask": False, "return_token_type_ids": False}
        if self.settings.pooling != "prompt":
            return tokenizer(texts, truncation=True, max_length=max_len, **plain)["input_ids"]
        before, between, after = (
            tokenizer(part, add_special_tokens=False, **plain)["input_ids"]
            for part in _template_parts(self.settings.prompt_template)
        )
        head, tail = _special_ends(tokenizer)
        fixed = len(head) + len(before) + len(between) + 1 + len(after) + len(tail)
        budget = max_len - fixed
        if budget < 1:
            raise ValueError(f"max length {max_len} leaves no room for text in the template")
        bodies = tokenizer(
            texts, add_special_tokens=False, truncation=True, max_length=budget, **plain
        )["input_ids"]
        mask = [tokenizer.mask_token_id]
        return [head + before + body + between + mask + after + tail for body in bodies]

    def tokenize_queries(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self._tokenize(texts, "query")

    def tokenize_passages(self, titles: list[str | None], texts: list[str]) -> dict:
        joined = [passage_text(a, b) for a, b in zip(titles, texts)]
        return self._tokenize(joined, "passage")

    def _tokenize(self, texts: list[str], side: str) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        left = self.tokenizer.padding_side == "left"
        return pad_token_ids(self.token_ids(texts, side), pad_id, left)

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
                model.config.hidden_size,
                self.settings.similarity,
                num_layers=getattr(model.config, "num_hidden_layers", None),
                prefixes=(self.settings.query_prefix, self.settings.passage_prefix),
                pool_prefix=self.settings.pool_prefix,
                head=self.head.export() if self.head is not None else None,
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
    keys = ("pooling", "normalize", "query_prefix", "passage_prefix", "pool_prefix")
    settings = {k: st[k] for k in keys if k in st}
    if "max_seq_length" in st:  # sentence-transformers truncates queries and passages alike
        settings["passage_max_len"] = settings["query_max_len"] = st["max_seq_length"]
    return settings


def _load_head(folder: Path) -> DenseHead | None:
    found = head_dir(folder)
    return DenseHead(*read_dense(found)) if found is not None else None
