"""Packaging promises: one distribution, mapped directories, no top-level ``operator``."""

from __future__ import annotations

import importlib
import operator
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = set()
    for top, name in (("runtime", "kubebots.runtime"), ("operator", "kubebots.operator")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found == listed


def test_operator_does_not_shadow_the_standard_library() -> None:
    assert hasattr(operator, "itemgetter")
    assert importlib.import_module("kubebots.operator").__name__ == "kubebots.operator"
    out = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "lib/python" in out.stdout and "/work" not in out.stdout.replace(sys.prefix, "")


def test_seed_public_imports() -> None:
    from kubebots.runtime import BotContext, BotManager, DynaBot

    assert BotManager and BotContext and DynaBot
