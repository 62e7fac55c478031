"""`rqa train-dual`, `rqa train-cross`, `rqa train-joint`, `rqa train-pairs` and
`rqa train-retromae`: train from a YAML config on Ray or locally; `--set KEY=VALUE` overrides any
key of the config, nested ones too."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.launch_settings import load_train_job
from pipelines.overrides import add_set_arg, merged, parse_set
from pipelines.train_launcher import launch
from retrieval.training.config import read_yaml_mapping

COMMANDS = {
    "dual": ("train-dual", "train a dual encoder (retriever)"),
    "cross": ("train-cross", "train a cross-encoder (re-ranker)"),
    "joint": ("train-joint", "train a retriever and a re-ranker together (RocketQAv2)"),
    "pair": ("train-pairs", "train a sentence-embedding model on sentence pairs (STS, NLI)"),
    "retromae": (
        "train-retromae",
        "pre-train an encoder on a corpus by masked auto-encoding (RetroMAE)",
    ),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    for kind, (name, help_text) in COMMANDS.items():
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("--config", type=Path, required=True, help="training YAML")
        parser.add_argument("--model", help="override model (HF id or local folder)")
        parser.add_argument("--output-dir", type=Path, help="override output_dir")
        parser.add_argument("--workers", type=int, help="override workers")
        parser.add_argument("--launcher", choices=("ray", "local"), help="override launcher")
        parser.add_argument("--max-steps", type=int, help="override max_steps")
        add_set_arg(parser, "loss=infonce --set 'queue={}' --set 'projector={}' "
                    "--set data.max_examples=100")  # fmt: skip
        parser.set_defaults(run=run, kind=kind)


def run(args: argparse.Namespace) -> int:
    names = ("model", "output_dir", "workers", "launcher", "max_steps")
    overrides = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    overrides = {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()}
    changes = parse_set(args.set)
    if changes:  # top-level keys whose nested mappings are the file's with the changes laid over
        raw = read_yaml_mapping(args.config)
        overrides = {**{k: merged(raw, changes)[k] for k in changes}, **overrides}
    config, how = load_train_job(args.config, kind=args.kind, **overrides)
    model_dir = launch(config, how)
    print(f"model written to {model_dir}")
    return 0
