"""``kubebots validate -f FILE``: check Bot files against the one schema."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from ..schema import load_bot_documents


def add_validate_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("validate", help="validate Bot YAML files")
    p.add_argument("-f", "--filename", action="append", required=True, help="a Bot YAML file")
    p.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    failed = False
    for path in args.filename:
        try:
            docs = load_bot_documents(path)
        except ConfigurationError as exc:
            failed = True
            print(f"{path}: invalid", file=sys.stderr)
            for field, reason in exc.errors or [("(root)", exc.message)]:
                print(f"  {field}: {reason}", file=sys.stderr)
            continue
        except OSError as exc:
            failed = True
            print(f"{path}: cannot read ({exc.strerror})", file=sys.stderr)
            continue
        for doc in docs:
            print(f"{path}: bot {doc.namespace}/{doc.name} is valid")
    return 1 if failed else 0
