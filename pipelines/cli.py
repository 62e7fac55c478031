"""The `rqa` entry point: parses the command line and hands over to one command module.

Errors the user can fix (bad files, bad config, a missing model: retrieval.errors.UserError)
end as one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipelines.commands import (
    average,
    download,
    encode,
    evaluate,
    evaluate_pairs,
    evaluate_sts,
    index,
    prepare,
    report,
    rerank,
    run,
    search,
    train,
    whiten,
)
from retrieval.errors import UserError

COMMANDS = (
    download,
    prepare,
    encode,
    index,
    search,
    evaluate,
    rerank,
    evaluate_sts,
    evaluate_pairs,
    whiten,
    average,
    train,
    run,
    report,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rqa", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.run(args) or 0
    except UserError as err:
        if args.verbose:
            logging.getLogger(__name__).debug("user error", exc_info=True)
        print(f"rqa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (pipelines/ray_env.py): finished work is kept
        print(f"rqa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
