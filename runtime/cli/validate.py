"""``kubebots validate -f PATH [-f PATH ...] [-R]``: check Bot files against the one schema.

Like ``kubectl apply --dry-run``'s file handling: ``-f`` takes files, directories (their YAML
and JSON files; with ``-R`` their subdirectories too) or ``-`` for standard input, and may be
given several times. Every problem of every document of every file is reported in one run, as
``FILE:LINE:COLUMN: NAMESPACE/NAME: FIELD: REASON`` (the position of the field in the file), so
a fix never uncovers the next error in a second round. Values from the files are never printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigurationError
from ..schema.document import BotDocument, DocumentProblem, check_bot_text, find_bot_files


def add_validate_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("validate", help="validate Bot YAML files")
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        help="a Bot file, a directory of them, or - for standard input (repeatable)",
    )
    p.add_argument(
        "-R", "--recursive", action="store_true", help="also read the directories' subdirectories"
    )
    p.set_defaults(handler=run_validate)


def _name(path: Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def check_file(path: Path, stdin: TextIO) -> tuple[list[BotDocument], list[DocumentProblem]]:
    source = _name(path)
    try:
        text = stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [], [DocumentProblem(source, "(file)", "not UTF-8 text")]
    except OSError as exc:
        return [], [DocumentProblem(source, "(file)", f"cannot read ({exc.strerror})")]
    return check_bot_text(text, source=source)


def run_validate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        files = [
            path
            for name in args.filename
            for path in (
                [Path("-")] if name == "-" else find_bot_files([name], recursive=args.recursive)
            )
        ]
    except ConfigurationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    valid = 0
    problems: list[DocumentProblem] = []
    for path in files:
        docs, found = check_file(path, sys.stdin)
        for doc in docs:
            print(f"{_name(path)}: bot {doc.namespace}/{doc.name} is valid")
        valid += len(docs)
        problems += found
    for problem in problems:
        print(problem, file=sys.stderr)
    if not files:
        print("error: no Bot files found", file=sys.stderr)
        return 1
    if problems:
        print(
            f"{len(problems)} problem{'s' * (len(problems) != 1)} in {len(files)} file(s); "
            f"{valid} Bot(s) valid",
            file=sys.stderr,
        )
        return 1
    return 0
