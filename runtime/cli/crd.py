"""``kubebots crd``: print the Bot CRD generated from the schema (``make crds`` writes it)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..schema.crd import bot_crd_yaml


def add_crd_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("crd", help="print the Bot CRD (YAML)")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(handler=run_crd)


def run_crd(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    text = bot_crd_yaml()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
