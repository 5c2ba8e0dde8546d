"""``kubebots store apply|get|ls|delete`` against the embedded SQLite store and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml

from .support import EXAMPLE, kubebots

TWO = """
apiVersion: kubebots.io/v1alpha1
kind: Bot
metadata: {name: one, namespace: team}
spec: {systemPrompt: first}
---
apiVersion: kubebots.io/v1alpha1
kind: Bot
metadata: {name: two, namespace: team}
spec: {systemPrompt: second}
"""


def test_apply_get_ls_delete_on_the_embedded_store(tmp_path: Path) -> None:
    (tmp_path / "two.yaml").write_text(TWO)
    out = kubebots("store", "apply", "-f", "two.yaml", "-f", str(EXAMPLE), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "bot team:one created (generation 1, revision 1)" in out.stdout
    assert "bot default:support created" in out.stdout
    assert (tmp_path / ".kubebots" / "store.db").exists()
    again = kubebots("store", "apply", "-f", "two.yaml", cwd=tmp_path)
    assert "bot team:one unchanged" in again.stdout
    (tmp_path / "two.yaml").write_text(TWO.replace("first", "changed"))
    changed = kubebots("store", "apply", "-f", "two.yaml", cwd=tmp_path)
    assert "bot team:one configured (generation 2" in changed.stdout
    assert "bot team:two unchanged" in changed.stdout
    listing = kubebots("store", "ls", cwd=tmp_path).stdout
    assert "team:one" in listing and "(3 bots" in listing
    got = yaml.safe_load(kubebots("store", "get", "one", "-n", "team", cwd=tmp_path).stdout)
    assert got["spec"] == {"systemPrompt": "changed"}
    assert got["metadata"]["generation"] == 2
    assert kubebots("store", "delete", "team:one", cwd=tmp_path).returncode == 0
    missing = kubebots("store", "get", "team:one", cwd=tmp_path)
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert kubebots("store", "delete", "team:one", cwd=tmp_path).returncode == 1


def test_invalid_file_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(TWO)
    assert kubebots("store", "apply", "-f", "good.yaml", cwd=tmp_path).returncode == 0
    bad = TWO.replace("first", "new").replace("systemPrompt: second", "systemPromt: typo")
    (tmp_path / "bad.yaml").write_text(bad)
    out = kubebots("store", "apply", "-f", "bad.yaml", cwd=tmp_path)
    assert out.returncode == 1
    assert "spec.systemPromt" in out.stderr
    got = yaml.safe_load(kubebots("store", "get", "team:one", cwd=tmp_path).stdout)
    assert got["spec"] == {"systemPrompt": "first"}  # the valid first document was not written


def test_postgres_store_by_url(tmp_path: Path, postgres_url: str) -> None:
    (tmp_path / "two.yaml").write_text(TWO.replace("team", f"t{uuid.uuid4().hex[:6]}"))
    out = kubebots("store", "--store", postgres_url, "apply", "-f", "two.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "created" in out.stdout
    assert not (tmp_path / ".kubebots").exists()
    bot_id = out.stdout.split()[1]
    got = kubebots("store", "--store", postgres_url, "get", bot_id, cwd=tmp_path)
    assert got.returncode == 0 and "systemPrompt: first" in got.stdout
    assert (
        kubebots("store", "--store", postgres_url, "delete", bot_id, cwd=tmp_path).returncode == 0
    )


def test_bad_store_url(tmp_path: Path) -> None:
    out = kubebots("store", "--store", "redis://x", "ls", cwd=tmp_path)
    assert out.returncode == 1 and "unsupported store URL" in out.stderr


def test_reading_from_no_store_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    for verb in (["ls"], ["get", "team:one"], ["delete", "team:one"]):
        out = kubebots("store", *verb, cwd=tmp_path)
        assert out.returncode == 1, out
        assert "error: no config store at .kubebots/store.db" in out.stderr
    elsewhere = kubebots("store", "--store", "sqlite:other/s.db", "ls", cwd=tmp_path)
    assert "no config store at other/s.db" in elsewhere.stderr
    assert not (tmp_path / ".kubebots").exists() and not (tmp_path / "other").exists()
