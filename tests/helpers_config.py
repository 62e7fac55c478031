"""A pipeline config written out and read back as `rqa run` reads it (every cross-key check
included), for tests that change a shipped config's keys."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipelines.config import PipelineConfig, load_pipeline_config


def load_raw(tmp_path: Path, raw: dict) -> PipelineConfig:
    """``raw`` (a config's YAML as a dict) with its data pointed at ``tmp_path``, written to
    ``tmp_path/config.yaml`` and loaded from there, so an error names that file."""
    raw["data"] = {"beir": str(tmp_path)}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_pipeline_config(path)
