"""Reading and writing sentence-transformers' folder files (modules.json, pooling config).

Writing them next to the HF weights makes `SentenceTransformer(path)` load our dual encoder, and
reading them lets us start from any sentence-transformers checkpoint with its own pooling.
"""

from __future__ import annotations

import json
from pathlib import Path

# Our pooling names -> sentence-transformers' classic config keys; first_last_avg has none.
_ST_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "weighted_mean": "pooling_mode_weightedmean_tokens",
}
_ST_MODES = {"cls": "cls", "mean": "mean", "weightedmean": "weighted_mean"}


def read_st_settings(folder: str | Path) -> dict:
    """Pooling, normalisation and max length of a sentence-transformers folder ({} if none)."""
    folder = Path(folder)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return {}
    settings: dict = {"normalize": False}
    for module in json.loads(modules_file.read_text()):
        kind = module["type"].rsplit(".", 1)[-1]
        if kind == "Pooling":
            settings["pooling"] = _pooling_mode(folder / module["path"] / "config.json")
        elif kind == "Normalize":
            settings["normalize"] = True
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        max_len = json.loads(bert_config.read_text()).get("max_seq_length")
        if max_len:
            settings["max_seq_length"] = int(max_len)
    return settings


def _pooling_mode(config_file: Path) -> str:
    config = json.loads(config_file.read_text())
    if "pooling_mode" in config:  # sentence-transformers >= 6 writes one string
        mode = config["pooling_mode"]
    else:
        mode = next((m for m, key in _ST_KEYS.items() if config.get(key)), "mean")
        return mode
    if mode not in _ST_MODES:
        raise ValueError(f"{config_file}: pooling mode '{mode}' is not supported by RQA")
    return _ST_MODES[mode]


def write_st_files(
    folder: str | Path,
    pooling: str,
    normalize: bool,
    max_seq_length: int,
    dim: int,
    similarity: str = "cosine",
) -> bool:
    """Write the classic sentence-transformers files; False when the pooling has no ST twin."""
    if pooling not in _ST_KEYS:
        return False
    folder = Path(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pooling_config = {"word_embedding_dimension": dim}
    pooling_config.update({key: mode == pooling for mode, key in _ST_KEYS.items()})
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2))
    bert_config = {"max_seq_length": max_seq_length, "do_lower_case": False}
    (folder / "sentence_bert_config.json").write_text(json.dumps(bert_config, indent=2))
    st_config = {"similarity_fn_name": similarity}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2))
    return True
