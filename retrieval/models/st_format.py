"""Reading and writing sentence-transformers' folder files (modules.json and each module's config).

Writing them next to the HF weights makes `SentenceTransformer(path)` load our dual encoder, and
reading them lets us start from any sentence-transformers checkpoint with its own pooling. What
sentence-transformers reproduces (``SentenceTransformer.encode_query`` / ``encode_document``):

- cls, mean, weighted_mean pooling: Transformer, Pooling;
- first_last_avg: Transformer with ``output_hidden_states``, WeightedLayerPooling from layer 1
  with weights (1, 0, ..., 0, 1), then mean Pooling;
- query_prefix / passage_prefix: ``prompts`` {"query", "document"} in
  config_sentence_transformers.json; ``pool_prefix=False`` (INSTRUCTOR): Pooling
  ``include_prompt: false``;
- a linear head (BERT-whitening): Dense with identity activation; normalize: Normalize.

``prompt`` pooling (PromptBERT) has no twin: sentence-transformers cannot wrap a text in a
template with a suffix nor pool at a ``[MASK]`` token, so such a folder gets no modules.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# Our pooling names -> sentence-transformers' classic config keys.
_ST_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "weighted_mean": "pooling_mode_weightedmean_tokens",
}
_ST_MODES = {"cls": "cls", "mean": "mean", "weightedmean": "weighted_mean"}
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
ACTIVATIONS = {
    "identity": "torch.nn.modules.linear.Identity",
    "tanh": "torch.nn.modules.activation.Tanh",
}
_MODULE = "sentence_transformers.models."
# Folder of a linear head when the pooling has no sentence-transformers twin (no modules.json).
HEAD_DIR = "2_Dense"


def _modules(folder: Path) -> list[dict]:
    modules_file = folder / "modules.json"
    return json.loads(modules_file.read_text()) if modules_file.is_file() else []


def _kind(module: dict) -> str:
    return module["type"].rsplit(".", 1)[-1]


def read_st_settings(folder: str | Path) -> dict:
    """Pooling, normalisation, max length, prompts and ``pool_prefix`` of a sentence-transformers
    folder ({} if none); a module RQA cannot reproduce is an error, not silently skipped.
    """
    folder = Path(folder)
    modules = _modules(folder)
    if not modules:
        return {}
    settings: dict = {"normalize": False}
    layers = False
    for module in modules:
        kind = _kind(module)
        if kind == "Dense" and settings["normalize"]:
            raise ValueError(f"{folder}: a Dense module after Normalize is not supported by RQA")
        if kind == "Pooling":
            config = json.loads((folder / module["path"] / "config.json").read_text())
            settings["pooling"] = _pooling_mode(folder / module["path"] / "config.json", config)
            if config.get("include_prompt", True) is False:
                settings["pool_prefix"] = False
        elif kind == "Normalize":
            settings["normalize"] = True
        elif kind == "WeightedLayerPooling":
            _check_first_last(folder / module["path"])
            layers = True
        elif kind not in ("Transformer", "Dense"):
            raise ValueError(
                f"{folder}: sentence-transformers module {kind} is not supported by RQA"
            )
    if layers:
        if settings.get("pooling") != "mean":
            raise ValueError(
                f"{folder}: WeightedLayerPooling is supported only before mean pooling"
            )
        settings["pooling"] = "first_last_avg"
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        max_len = json.loads(bert_config.read_text()).get("max_seq_length")
        if max_len:
            settings["max_seq_length"] = int(max_len)
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = json.loads(st_config.read_text()).get("prompts") or {}
        if prompts.get("query"):
            settings["query_prefix"] = prompts["query"]
        document = next((prompts[k] for k in ("document", "passage", "corpus") if k in prompts), "")
        if document:
            settings["passage_prefix"] = document
    return settings


def _pooling_mode(config_file: Path, config: dict) -> str:
    if "pooling_mode" in config:  # sentence-transformers >= 6 writes one string
        mode = config["pooling_mode"]
    else:  # the classic files: one boolean per mode
        active = [key for key in _LEGACY_KEYS if config.get(key)]
        if len(active) > 1:
            raise ValueError(f"{config_file}: concatenated pooling modes are not supported by RQA")
        mode = _LEGACY_KEYS[active[0]] if active else "mean"
    if mode not in _ST_MODES:
        raise ValueError(f"{config_file}: pooling mode '{mode}' is not supported by RQA")
    return _ST_MODES[mode]


def _first_last_weights(num_layers: int) -> torch.Tensor:
    """Layer weights over layers 1..L that make WeightedLayerPooling (h_1 + h_L) / 2."""
    weights = torch.zeros(num_layers)
    weights[0] += 1.0
    weights[-1] += 1.0
    return weights


def _check_first_last(module_dir: Path) -> None:
    config = json.loads((module_dir / "config.json").read_text())
    weights = load_file(str(module_dir / "model.safetensors"))["layer_weights"]
    layers = int(config["num_hidden_layers"])
    expected = _first_last_weights(layers)
    if int(config.get("layer_start", 4)) != 1 or not torch.equal(weights.float(), expected):
        raise ValueError(
            f"{module_dir}: only WeightedLayerPooling that averages the first and last layer "
            "(first_last_avg) is supported by RQA"
        )


def head_dir(folder: str | Path) -> Path | None:
    """The folder of the model's linear head (a Dense module), or None when it has none."""
    folder = Path(folder)
    dense = [m for m in _modules(folder) if _kind(m) == "Dense"]
    if len(dense) > 1:
        raise ValueError(f"{folder}: more than one Dense module is not supported by RQA")
    if dense:
        return folder / dense[0]["path"]
    if not (folder / "modules.json").is_file() and (folder / HEAD_DIR / "config.json").is_file():
        return folder / HEAD_DIR
    return None


def read_dense(module_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """``(weight [out, in], bias [out] or None, activation)`` of a Dense module folder."""
    module_dir = Path(module_dir)
    config = json.loads((module_dir / "config.json").read_text())
    names = {path: name for name, path in ACTIVATIONS.items()}
    activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
    if activation not in names:
        raise ValueError(f"{module_dir}: Dense activation {activation} is not supported by RQA")
    if (module_dir / "model.safetensors").is_file():
        weights = load_file(str(module_dir / "model.safetensors"))
    else:
        weights = torch.load(
            module_dir / "pytorch_model.bin", map_location="cpu", weights_only=True
        )
    bias = weights.get("linear.bias") if config.get("bias", True) else None
    return weights["linear.weight"], bias, names[activation]


def write_dense(
    module_dir: str | Path, weight: torch.Tensor, bias: torch.Tensor | None, activation: str
) -> None:
    """Write a Dense module folder: ``y = activation(x @ weight.T + bias)``."""
    module_dir = Path(module_dir)
    module_dir.mkdir(parents=True, exist_ok=True)
    out_features, in_features = weight.shape
    config = {
        "in_features": int(in_features),
        "out_features": int(out_features),
        "bias": bias is not None,
        "activation_function": ACTIVATIONS[activation],
    }
    (module_dir / "config.json").write_text(json.dumps(config, indent=2))
    tensors = {"linear.weight": weight.detach().float().contiguous().cpu()}
    if bias is not None:
        tensors["linear.bias"] = bias.detach().float().contiguous().cpu()
    save_file(tensors, str(module_dir / "model.safetensors"))


def _entry(idx: int, kind: str) -> dict:
    path = "" if kind == "Transformer" else f"{idx}_{kind}"
    return {"idx": idx, "name": str(idx), "path": path, "type": _MODULE + kind}


def write_st_files(
    folder: str | Path,
    pooling: str,
    normalize: bool,
    max_seq_length: int,
    dim: int,
    similarity: str = "cosine",
    *,
    num_layers: int | None = None,
    prefixes: tuple[str, str] = ("", ""),
    pool_prefix: bool = True,
    head: tuple[torch.Tensor, torch.Tensor | None, str] | None = None,
) -> bool:
    """Write the classic sentence-transformers files; False when the pooling has no ST twin.

    ``dim`` is the transformer's hidden size, ``num_layers`` its layer count (first_last_avg),
    ``prefixes`` the (query, passage) prefixes, ``head`` a linear head ``(weight, bias,
    activation)`` applied after pooling and before normalisation. Without a twin the head is
    still written (to ``HEAD_DIR``), so RQA itself reloads it.
    """
    folder = Path(folder)
    if pooling not in (*_ST_KEYS, "first_last_avg"):
        if head is not None:
            write_dense(folder / HEAD_DIR, *head)
        return False
    kinds = ["Transformer"]
    if pooling == "first_last_avg":
        if not num_layers:
            raise ValueError("first_last_avg export needs the model's number of layers")
        kinds.append("WeightedLayerPooling")
    kinds.append("Pooling")
    if head is not None:
        kinds.append("Dense")
    if normalize:
        kinds.append("Normalize")
    modules = [_entry(idx, kind) for idx, kind in enumerate(kinds)]
    for module in modules[1:]:
        (folder / module["path"]).mkdir(exist_ok=True)
    paths = {_kind(m): folder / m["path"] for m in modules}
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))

    pooled = "mean" if pooling == "first_last_avg" else pooling
    pooling_config: dict = {"word_embedding_dimension": dim}
    pooling_config.update({key: mode == pooled for mode, key in _ST_KEYS.items()})
    if not pool_prefix:
        pooling_config["include_prompt"] = False
    (paths["Pooling"] / "config.json").write_text(json.dumps(pooling_config, indent=2))
    bert_config: dict = {"max_seq_length": max_seq_length, "do_lower_case": False}
    if pooling == "first_last_avg":
        layer_config = {"word_embedding_dimension": dim, "layer_start": 1}
        layer_config["num_hidden_layers"] = num_layers
        (paths["WeightedLayerPooling"] / "config.json").write_text(json.dumps(layer_config))
        weights = {"layer_weights": _first_last_weights(num_layers)}
        save_file(weights, str(paths["WeightedLayerPooling"] / "model.safetensors"))
        # the Transformer module hands all layers on only when the HF config asks for them
        bert_config["config_args"] = {"output_hidden_states": True}
    if head is not None:
        write_dense(paths["Dense"], *head)
    (folder / "sentence_bert_config.json").write_text(json.dumps(bert_config, indent=2))
    st_config: dict = {"similarity_fn_name": similarity}
    if any(prefixes):
        st_config["prompts"] = {"query": prefixes[0], "document": prefixes[1]}
        st_config["default_prompt_name"] = None
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2))
    return True
