"""Packaging promises: one distribution, mapped directories, no top-level ``operator``."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {"kubebots.runtime", "kubebots.operator"}
    for top, name in (("runtime", "kubebots.runtime"), ("operator", "kubebots.operator")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found == set(conf["packages"])


def test_operator_dir_is_never_a_regular_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert importlib.import_module("kubebots.operator").__name__ == "kubebots.operator"


def test_running_python_from_the_repo_root_keeps_the_stdlib_operator() -> None:
    # `python -m` puts the current directory first on sys.path; runpy imports operator.
    done = subprocess.run(
        [sys.executable, "-m", "json.tool", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules.pop('operator'); sys.path.insert(0, '');"
            " import operator; print(operator.__file__, hasattr(operator, 'itemgetter'))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split()[1] == "True"
    assert not probe.stdout.startswith(str(ROOT / "operator"))


def test_seed_public_imports() -> None:
    from kubebots.runtime import BotContext, BotManager, DynaBot

    assert BotManager and BotContext and DynaBot


def test_runtime_never_imports_the_operator() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "runtime").rglob("*.py")
        if "kubebots.operator" in path.read_text()
    ]
    assert offenders == []
