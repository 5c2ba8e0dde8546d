"""``kubebots status`` against the embedded SQLite store and PostgreSQL, with replica reports
written as runtime replicas write them."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubebots.runtime.configstore import BotReport, ReplicaReport, open_config_store
from kubebots.runtime.configstore.rollout import ROLLOUT_ANNOTATION, RolloutState, candidate_id

from .support import kubebots

TWO = """
apiVersion: kubebots.io/v1alpha1
kind: Bot
metadata: {{name: one, namespace: {ns}}}
spec: {{systemPrompt: first}}
---
apiVersion: kubebots.io/v1alpha1
kind: Bot
metadata: {{name: two, namespace: {ns}}}
spec: {{systemPrompt: second}}
"""


#: ``--replica-max-age`` of the tests: the silent replica is older, the others are reported
#: again right before each command (the stores stamp heartbeats themselves)
MAX_AGE = "3"


async def silent_replica(url: str, ns: str) -> None:
    """A replica that applied nothing and then stopped reporting: 4 s old when this returns."""
    store = await open_config_store(url, create=False)
    try:
        await store.report(ReplicaReport(f"{ns}-r3", 0, datetime.now(UTC)))
    finally:
        await store.close()
    await asyncio.sleep(4)


async def replicas_report(url: str, ns: str) -> None:
    """Two replicas as the runtime reports them: one serves everything (its MCP server of
    ``two`` offers 4 tools), one fails ``one`` (its MCP server cannot be listed)."""
    store = await open_config_store(url, create=False)
    try:
        one, two = await store.get(f"{ns}:one"), await store.get(f"{ns}:two")
        assert one is not None and two is not None
        top = max(one.revision, two.revision)
        now = datetime.now(UTC)
        tools = BotReport(two.bot_id, 1, two.revision, tools=(("files", 4),))
        await store.report(ReplicaReport(f"{ns}-r1", top, now, (tools,)))
        failed = BotReport(
            one.bot_id,
            None,
            None,
            error="MCP server files: connection refused",
            error_revision=one.revision,
            reason="ToolUnavailable",
        )
        await store.report(ReplicaReport(f"{ns}-r2", top, now, (failed, tools)))
    finally:
        await store.close()


def status_json(*args: str, cwd: Path) -> dict[str, Any]:
    out = kubebots("status", *args, "-o", "json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    document: dict[str, Any] = json.loads(out.stdout)
    return document


def test_status_of_the_embedded_store(tmp_path: Path) -> None:
    (tmp_path / "two.yaml").write_text(TWO.format(ns="team"))
    assert kubebots("store", "apply", "-f", "two.yaml", cwd=tmp_path).returncode == 0
    url = f"sqlite:{tmp_path / '.kubebots' / 'store.db'}"
    asyncio.run(silent_replica(url, "team"))
    asyncio.run(replicas_report(url, "team"))

    document = status_json("--replica-max-age", MAX_AGE, cwd=tmp_path)
    assert document["storeRevision"] == 2 and document["replicas"] == 2  # r3 is not live
    one, two = document["bots"]
    assert one["botId"] == "team:one" and one["generation"] == 1 and one["revision"] == 1
    assert one["served"] == "1/2" and one["ready"] is False
    assert one["reason"] == "ToolUnavailable" and one["errorReasons"] == ["ToolUnavailable"]
    assert one["errors"] == ["replica team-r2: MCP server files: connection refused"]
    assert two["served"] == "2/2" and two["ready"] is True and two["reason"] == "Serving"
    assert two["tools"] == [{"name": "files", "tools": 4, "replicas": 2}]
    assert two["errors"] == [] and two["fallbacks"] == []

    asyncio.run(replicas_report(url, "team"))
    table = kubebots("status", "--replica-max-age", MAX_AGE, cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == [
        "BOT",
        "GENERATION",
        "REVISION",
        "SERVED",
        "READY",
        "REASON",
        "ROLLOUT",
        "TOOLS",
        "ERROR",
    ]
    assert table[1].split()[:8] == [
        "team:one", "1", "1", "1/2", "False", "ToolUnavailable", "-", "-"
    ]  # fmt: skip
    assert table[1].endswith("replica team-r2: MCP server files: connection refused")
    assert table[2].split() == [
        "team:two", "1", "2", "2/2", "True", "Serving", "-", "files=4", "-"
    ]  # fmt: skip
    assert table[3] == "(2 bots, store revision 2, 2 live replicas)"

    # the default max age (15 s) counts the third replica: it has not applied anything
    wide = status_json("team:two", cwd=tmp_path)
    assert [b["served"] for b in wide["bots"]] == ["2/3"]
    assert wide["bots"][0]["reason"] == "RollingOut"
    # the operator's variable sets it too
    env = {"KUBEBOTS_REPLICA_MAX_AGE": MAX_AGE}
    asyncio.run(replicas_report(url, "team"))
    out = kubebots("status", "-o", "json", "team:two", cwd=tmp_path, env=env)
    assert json.loads(out.stdout)["bots"][0]["served"] == "2/2"


def test_status_errors(tmp_path: Path) -> None:
    none = kubebots("status", cwd=tmp_path)  # no store here: nothing created
    assert none.returncode == 1 and "error:" in none.stderr
    assert not (tmp_path / ".kubebots").exists()
    (tmp_path / "two.yaml").write_text(TWO.format(ns="team"))
    assert kubebots("store", "apply", "-f", "two.yaml", cwd=tmp_path).returncode == 0
    missing = kubebots("status", "team:three", cwd=tmp_path)
    assert missing.returncode == 1 and "not in the store: team:three" in missing.stderr
    idle = status_json(cwd=tmp_path)
    assert [(b["served"], b["reason"]) for b in idle["bots"]] == [("0/0", "NoReplicas")] * 2
    bad = kubebots("status", cwd=tmp_path, env={"KUBEBOTS_REPLICA_MAX_AGE": "soon"})
    assert bad.returncode == 1 and "KUBEBOTS_REPLICA_MAX_AGE" in bad.stderr


def test_status_of_a_postgres_store(tmp_path: Path, postgres_url: str) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    (tmp_path / "two.yaml").write_text(TWO.format(ns=ns))
    applied = kubebots("store", "--store", postgres_url, "apply", "-f", "two.yaml", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    asyncio.run(replicas_report(postgres_url, ns))
    # other tests' replicas report to this database too: the served counts include them
    document = status_json("--store", postgres_url, f"{ns}:one", f"{ns}:two", cwd=tmp_path)
    one, two = document["bots"]
    assert one["botId"] == f"{ns}:one" and two["botId"] == f"{ns}:two"
    assert one["reason"] == "ToolUnavailable"
    assert one["errors"] == [f"replica {ns}-r2: MCP server files: connection refused"]
    assert two["tools"] == [{"name": "files", "tools": 4, "replicas": 2}]
    assert two["revision"] > one["revision"] and document["storeRevision"] >= two["revision"]
    assert not (tmp_path / ".kubebots").exists()


async def put_candidate(url: str, bot_id: str, state: RolloutState) -> None:
    """A candidate entry beside ``bot_id``'s, as the operator writes one during a rollout."""
    store = await open_config_store(url, create=False)
    try:
        stable = await store.get(bot_id)
        assert stable is not None
        annotations = {ROLLOUT_ANNOTATION: state.to_annotation()}
        config = {"systemPrompt": "second, improved"}
        await store.put(
            candidate_id(bot_id), config, generation=2, uid=stable.uid, annotations=annotations
        )
    finally:
        await store.close()


def test_status_shows_a_rollout_on_its_bot_not_as_a_bot(tmp_path: Path) -> None:
    (tmp_path / "two.yaml").write_text(TWO.format(ns="team"))
    assert kubebots("store", "apply", "-f", "two.yaml", cwd=tmp_path).returncode == 0
    url = f"sqlite:{tmp_path / '.kubebots' / 'store.db'}"
    state = RolloutState("Progressing", 1, 1, 30, False, 1, 0.0)
    asyncio.run(put_candidate(url, "team:two", state))

    document = status_json(cwd=tmp_path)
    assert [b["botId"] for b in document["bots"]] == ["team:one", "team:two"]
    one, two = document["bots"]
    assert one["rollout"] is None
    assert two["generation"] == 1  # the stable generation keeps the Bot's entry
    assert two["rollout"] == {
        "phase": "Progressing",
        "step": 2,
        "weight": 30,
        "shadow": False,
        "attempt": 1,
        "reason": "",
        "candidateGeneration": 2,
        "candidateRevision": 3,
        "candidateServed": "0/0",
    }
    table = kubebots("status", cwd=tmp_path).stdout.splitlines()
    assert table[2].split()[:8] == [
        "team:two", "1", "2", "0/0", "False", "NoReplicas", "canary", "30%->2"
    ]  # fmt: skip
    assert table[3] == "(2 bots, store revision 3, 0 live replicas)"
    # a candidate id is not a Bot of the store
    missing = kubebots("status", candidate_id("team:two"), cwd=tmp_path)
    assert missing.returncode == 1 and "not in the store" in missing.stderr
    only = status_json("team:two", cwd=tmp_path)
    assert [b["rollout"]["candidateGeneration"] for b in only["bots"]] == [2]
