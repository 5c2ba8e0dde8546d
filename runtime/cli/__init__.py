"""The ``kubebots`` command line. The environment is read here, at the edge, and passed in."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from .chat import add_chat_parser
from .crd import add_crd_parser
from .serve import add_serve_parser
from .status import add_status_parser
from .store import add_store_parser
from .validate import add_validate_parser


def build_parser(load: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; plugin commands named in ``load`` (all when ``None``) are loaded in full.

    A plugin not loaded gets a one-line placeholder, so ``kubebots --help`` lists it without
    importing it (the operator's plugin imports kopf and kubernetes: ~0.4 s and ~15 MB that
    ``kubebots serve`` has no use for).
    """
    parser = argparse.ArgumentParser(
        prog="kubebots", description="Chat bots (LLM assistants) as Kubernetes resources."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_chat_parser(sub)
    add_validate_parser(sub)
    add_store_parser(sub)
    add_status_parser(sub)
    add_serve_parser(sub)
    add_crd_parser(sub)
    # Commands of other parts of the distribution (the operator) register themselves through
    # the "kubebots.commands" entry point group, so the runtime never imports them.
    for command in entry_points(group="kubebots.commands"):
        if load is None or command.name in load:
            command.load()(sub)
        else:
            sub.add_parser(command.name, help=f"see `kubebots {command.name} --help`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(load=argv[:1])
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(f"kubebots {version('kubebots')}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.handler(args, dict(os.environ))
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
