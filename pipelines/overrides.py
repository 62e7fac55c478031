"""`--set KEY=VALUE`: override any key of a YAML config from the command line (`rqa train-*`,
`rqa run`, `rqa config show`); VALUE is read as YAML and KEY may be dotted."""

from __future__ import annotations

import argparse

import yaml

from retrieval.errors import ConfigError


def add_set_arg(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key; VALUE is read as YAML, KEY may be dotted: --set {example}",
    )


def parse_set(values: list[str]) -> dict:
    """``KEY=VALUE`` options as a nested mapping (``data.split=dev`` -> {data: {split: dev}})."""
    nested: dict = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects KEY=VALUE, e.g. loss=cosent; got {value!r}")
        try:
            parsed = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: {text!r} is not a YAML value") from None
        *parents, last = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is set to a value and a mapping")
        node[last] = parsed
    return nested


def merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` laid over it, mapping by mapping."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
