"""``kubebots store apply|get|ls|delete`` against the embedded SQLite store and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import yaml

from kubebots.runtime.cli.store import apply_documents
from kubebots.runtime.configstore import WriteConflict, open_config_store
from kubebots.runtime.schema import iter_bot_documents

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


class ReadTogether:
    """A store whose ``get`` returns only once the other apply has read too (the race made
    certain); everything else is the real store's."""

    def __init__(self, inner: Any, barrier: asyncio.Barrier) -> None:
        self.inner, self.barrier = inner, barrier

    async def get(self, bot_id: str) -> Any:
        entry = await self.inner.get(bot_id)
        await self.barrier.wait()
        return entry

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_concurrent_applies_of_one_bot_never_both_succeed(tmp_path: Path) -> None:
    """Each apply reads the live entry, then writes the next generation: two at once would
    both write generation 2 with different specs. The write is a compare-and-swap on what was
    read, so exactly one wins and the other is told to read again."""
    url = f"sqlite:{tmp_path / 'store.db'}"
    seed = await open_config_store(url)
    docs = list(iter_bot_documents(TWO, source="two.yaml"))
    await apply_documents(seed, docs[:1])
    barrier = asyncio.Barrier(2)  # both applies have read before either writes
    one = ReadTogether(await open_config_store(url), barrier)
    two = ReadTogether(await open_config_store(url), barrier)
    try:
        edits = [
            dataclasses.replace(docs[0], spec=docs[0].spec.model_copy(update={"system_prompt": p}))
            for p in ("mine", "theirs")
        ]
        results = await asyncio.gather(
            apply_documents(one, edits[:1]), apply_documents(two, edits[1:]), return_exceptions=True
        )
        conflicts = [r for r in results if isinstance(r, WriteConflict)]
        assert len(conflicts) == 1, results
        assert "read it again and re-apply" in conflicts[0].message
        entry = await seed.get("team:one")
        assert entry is not None and entry.generation == 2
        winner = next(e for e, r in zip(edits, results, strict=True) if isinstance(r, list))
        assert entry.config["systemPrompt"] == winner.spec.system_prompt
    finally:
        for store in (seed, one, two):
            await store.close()
