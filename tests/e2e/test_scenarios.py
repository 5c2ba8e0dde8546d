"""End-to-end scenarios: kubectl -> kube-apiserver -> operator -> PostgreSQL store -> runtime.

The operator and the runtimes run as real processes with the deploy/ ServiceAccounts' tokens
(see conftest.py); nothing here talks to them other than through kubectl and HTTP.
"""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Iterator

import pytest

from kubebots.operator.kube import FINALIZER
from kubebots.runtime.testing.fake_openai import FakeOpenAIServer
from tests.e2e.conftest import (
    REPLICA_MAX_AGE,
    Stack,
    is_ready_for_generation,
    ready_reason,
    wait_until,
)


def bot_yaml(ns: str, name: str, spec: str) -> str:
    head = f"apiVersion: kubebots.io/v1alpha1\nkind: Bot\nmetadata:\n  name: {name}\n"
    head += f"  namespace: {ns}\nspec:\n"
    return head + textwrap.indent(textwrap.dedent(spec).strip() + "\n", "  ")


def echo_spec(prompt: str = "You are terse.") -> str:
    return f"""
        llm:
          provider: echo
          model: echo-1
        systemPrompt: {prompt}
        """


def openai_spec(base_url: str, prompt: str, secret: str | None = None) -> str:
    key = f"\n  apiKeySecretRef: {{name: {secret}, key: api-key}}" if secret else ""
    return (
        f"llm:\n  provider: openai\n  model: fake-model\n  baseUrl: {base_url}\n"
        f"  maxRetries: 0{key}\nsystemPrompt: {prompt}\n"
    )


def secret_yaml(ns: str, name: str, value: str) -> str:
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
        f"type: Opaque\nstringData:\n  api-key: {value}\n"
    )


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    server.start()
    yield server
    server.stop()


def chat_ok(stack: Stack, bot_id: str, message: str) -> str:
    assert stack.runtime is not None
    resp = stack.runtime.chat(bot_id, message)
    assert resp.status_code == 200, f"{resp.status_code} {resp.text}\n{stack.logs()}"
    body = resp.json()
    assert body["bot_id"] == bot_id
    return str(body["response"])


def test_1_apply_bot_becomes_ready_and_chats(stack: Stack) -> None:
    stack.apply(bot_yaml(stack.ns, "greeter", echo_spec()))
    bot = stack.wait_ready("greeter", timeout=60)
    status = bot["status"]
    assert status["botId"] == f"{stack.ns}:greeter"
    assert status["observedGeneration"] == bot["metadata"]["generation"]
    assert status["servedReplicas"] == status["replicas"] >= 1
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds == {
        "Accepted": "True",
        "Synced": "True",
        "Ready": "True",
        "Stalled": "False",
        "Reconciling": "False",
    }
    assert chat_ok(stack, f"{stack.ns}:greeter", "hello there") == "echo: hello there"


def test_2_edit_bot_switches_to_openai_and_ready_follows_generation(
    stack: Stack, fake_openai: FakeOpenAIServer
) -> None:
    bot_id = f"{stack.ns}:editor"
    stack.apply(bot_yaml(stack.ns, "editor", echo_spec("first prompt")))
    first = stack.wait_ready("editor")
    assert chat_ok(stack, bot_id, "one") == "echo: one"

    stack.apply(bot_yaml(stack.ns, "editor", openai_spec(fake_openai.base_url, "second prompt")))
    bot = stack.wait_status(
        "editor",
        lambda b: (
            b["metadata"]["generation"] > first["metadata"]["generation"]
            and is_ready_for_generation(b)
        ),
        "Ready=True for the edited generation",
    )
    assert bot["status"]["observedGeneration"] == bot["metadata"]["generation"]
    assert bot["status"]["revision"] > first["status"]["revision"]
    # Ready means every replica serves the new generation: the very next chat uses it.
    reply = chat_ok(stack, bot_id, "two")
    assert reply == "[fake-model] second prompt | two"
    sent = [r for r in fake_openai.requests if r["path"].endswith("/chat/completions")]
    assert sent, "the runtime never called the fake upstream"
    messages = sent[-1]["body"]["messages"]
    assert messages[0] == {"role": "system", "content": "second prompt"}


def test_3_schema_rejects_at_apply_and_missing_secret_keeps_last_good_config(
    stack: Stack, fake_openai: FakeOpenAIServer
) -> None:
    # The apiserver enforces the CRD's enum: nothing is stored.
    bad = stack.apply(
        bot_yaml(stack.ns, "rejected", "llm: {provider: anthropic, model: claude}"), check=False
    )
    assert bad.returncode != 0, bad.stdout
    assert "spec.llm.provider" in bad.stderr
    assert "anthropic" in bad.stderr
    assert "NotFound" in stack.kubectl("-n", stack.ns, "get", "bot", "rejected", check=False).stderr
    # An unknown field is NOT rejected by kubectl 1.20 nor pruned: the CRD preserves unknown
    # fields (x-kubernetes-preserve-unknown-fields) so that the operator reports them by path.
    # (README's "kubectl rejects unknown spec fields client-side" does not hold.)
    stack.apply(bot_yaml(stack.ns, "typo", "llm: {provider: echo, model: m, maxTokenz: 3}"))
    typo = stack.wait_status(
        "typo",
        lambda b: ready_reason(b) == ("False", "InvalidSpec"),
        "Ready=False reason InvalidSpec",
    )
    conds = {c["type"]: c for c in typo["status"]["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("False", "InvalidSpec")
    assert "spec.llm.maxTokenz" in conds["Accepted"]["message"]
    assert conds["Synced"]["status"] == "False"
    assert stack.sql("SELECT bot_id FROM {p}state WHERE bot_id = %s", f"{stack.ns}:typo") == []
    stack.kubectl("-n", stack.ns, "delete", "bot", "typo", "--timeout=60s")

    # A serving Bot edited to reference a Secret that does not exist: SecretMissing, and the
    # store (so every runtime) keeps the previous config.
    bot_id = f"{stack.ns}:keeper"
    stack.apply(bot_yaml(stack.ns, "keeper", echo_spec("kept prompt")))
    first = stack.wait_ready("keeper")
    assert chat_ok(stack, bot_id, "before") == "echo: before"
    stack.apply(
        bot_yaml(stack.ns, "keeper", openai_spec(fake_openai.base_url, "new", "no-such-secret"))
    )
    bot = stack.wait_status(
        "keeper",
        lambda b: (
            b["metadata"]["generation"] > first["metadata"]["generation"]
            and b["status"].get("observedGeneration") == b["metadata"]["generation"]
            and ready_reason(b) == ("False", "SecretMissing")
        ),
        "Ready=False reason SecretMissing",
    )
    conds = {c["type"]: c for c in bot["status"]["conditions"]}
    assert conds["Accepted"]["status"] == "True"
    assert (conds["Synced"]["status"], conds["Synced"]["reason"]) == ("False", "SecretMissing")
    assert conds["Stalled"]["status"] == "True"
    assert "no-such-secret" in conds["Ready"]["message"]
    assert bot["status"]["revision"] == first["status"]["revision"]  # nothing new stored
    assert chat_ok(stack, bot_id, "still") == "echo: still"
    assert not fake_openai.requests


def test_4_delete_bot_tombstones_and_chat_404s(stack: Stack) -> None:
    bot_id = f"{stack.ns}:doomed"
    stack.apply(bot_yaml(stack.ns, "doomed", echo_spec()))
    stack.wait_ready("doomed")
    assert chat_ok(stack, bot_id, "hi") == "echo: hi"

    # Returns only once the operator removed its finalizer (after writing the tombstone).
    stack.kubectl("-n", stack.ns, "delete", "bot", "doomed", "--timeout=60s")
    gone = stack.kubectl("-n", stack.ns, "get", "bot", "doomed", check=False)
    assert "NotFound" in gone.stderr
    rows = stack.sql("SELECT deleted FROM {p}state WHERE bot_id = %s", bot_id)
    assert rows == [(True,)], rows

    assert stack.runtime is not None
    runtime = stack.runtime

    def refused() -> object:
        resp = runtime.chat(bot_id, "anyone?")
        return resp if resp.status_code == 404 else None

    resp = wait_until(refused, "chat with the deleted bot to 404", 30, on_fail=stack.logs)
    body = resp.json()
    assert set(body) >= {"error", "message", "detail", "timestamp"}, body
    assert bot_id in body["message"] or bot_id in str(body["detail"]), body


def test_4b_another_controllers_finalizer_is_kept_and_ours_comes_first(stack: Stack) -> None:
    """Our finalizer is added beside another controller's before the store write, and only
    ours is removed (after the tombstone): the other controller then finishes the delete."""
    name, bot_id = "shared", f"{stack.ns}:shared"
    head = bot_yaml(stack.ns, name, echo_spec())
    stack.apply(head.replace("metadata:\n", "metadata:\n  finalizers: [other.example/keep]\n", 1))
    stack.wait_ready(name)
    assert stack.bot(name)["metadata"]["finalizers"] == ["other.example/keep", FINALIZER]
    stack.kubectl("-n", stack.ns, "delete", "bot", name, "--wait=false")

    def ours_released() -> bool:
        return bool(stack.bot(name)["metadata"]["finalizers"] == ["other.example/keep"])

    wait_until(ours_released, "our finalizer released, the other kept", 30, on_fail=stack.logs)
    rows = stack.sql("SELECT deleted FROM {p}state WHERE bot_id = %s", bot_id)
    assert rows == [(True,)], rows  # tombstoned before ours was released
    stack.kubectl(
        "-n",
        stack.ns,
        "patch",
        "bot",
        name,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    gone = stack.kubectl("-n", stack.ns, "get", "bot", name, check=False)
    assert "NotFound" in gone.stderr


def test_8_secret_rotation_reaches_the_runtime_without_restart(
    stack: Stack, fake_openai: FakeOpenAIServer
) -> None:
    bot_id = f"{stack.ns}:rotator"
    k1, k2 = "sk-e2e-first-0001", "sk-e2e-second-0002"
    stack.apply(secret_yaml(stack.ns, "llm-key", k1))
    stack.apply(bot_yaml(stack.ns, "rotator", openai_spec(fake_openai.base_url, "p", "llm-key")))
    stack.wait_ready("rotator")
    assert stack.runtime is not None and stack.runtime.popen is not None
    pid = stack.runtime.popen.pid

    assert chat_ok(stack, bot_id, "first") == "[fake-model] p | first"
    assert fake_openai.requests[-1]["authorization"] == f"Bearer {k1}"

    stack.apply(secret_yaml(stack.ns, "llm-key", k2))

    def uses_k2() -> bool:
        chat_ok(stack, bot_id, "again")
        return bool(fake_openai.requests[-1]["authorization"] == f"Bearer {k2}")

    wait_until(uses_k2, "the runtime to send the rotated key", 60, 0.5, stack.logs)
    assert stack.runtime.popen.pid == pid and stack.runtime.alive
    stack.wait_status("rotator", is_ready_for_generation, "Ready=True after the rotation")

    # The key values live only in the Secret: not in the Bot, the store or any log.
    bot_text = stack.kubectl("-n", stack.ns, "get", "bot", "rotator", "-o", "json").stdout
    store_text = str(
        stack.sql("SELECT config, annotations FROM {p}state WHERE bot_id = %s", bot_id)
    )
    events = stack.kubectl("-n", stack.ns, "get", "events", "-o", "json").stdout
    logs = "".join(p.log.read_text(errors="replace") for p in stack.procs)
    for key in (k1, k2):
        for where, text in (("bot", bot_text), ("store", store_text), ("events", events)):
            assert key not in text, f"{where} holds the API key"
        assert key not in logs, "a log holds the API key"


def test_6_ready_waits_for_every_live_replica(stack: Stack) -> None:
    bot_id = f"{stack.ns}:pair"
    second = stack.start_runtime("runtime-b")
    try:
        stack.apply(bot_yaml(stack.ns, "pair", echo_spec("v1")))
        first = stack.wait_status(
            "pair",
            lambda b: is_ready_for_generation(b) and b["status"].get("servedReplicas") == 2,
            "Ready=True served by 2/2",
        )
        assert first["status"]["served"] == "2/2"
        assert second.chat(bot_id, "b").json()["response"] == "echo: b"

        # A frozen replica (still live: its last heartbeat is recent) holds Ready back.
        second.signal(signal.SIGSTOP)
        stack.apply(bot_yaml(stack.ns, "pair", echo_spec("v2")))
        rolling = stack.wait_status(
            "pair",
            lambda b: (
                b["status"].get("observedGeneration")
                == b["metadata"]["generation"]
                > first["metadata"]["generation"]
                and ready_reason(b) == ("False", "RollingOut")
                and b["status"].get("served") == "1/2"
            ),
            "Ready=False RollingOut, served 1/2, while one replica lags",
            timeout=REPLICA_MAX_AGE,
        )
        assert rolling["status"]["servedReplicas"] == 1
        second.signal(signal.SIGCONT)
        stack.wait_status(
            "pair",
            lambda b: is_ready_for_generation(b) and b["status"].get("served") == "2/2",
            "Ready=True 2/2 once the replica catches up",
        )

        # A replica that is gone stops counting once its heartbeat is older than the max age.
        second.stop()
        done = stack.wait_status(
            "pair",
            lambda b: is_ready_for_generation(b) and b["status"].get("served") == "1/1",
            "served 1/1 after the replica's heartbeat expired",
            timeout=REPLICA_MAX_AGE + 30,
        )
        assert done["status"]["replicas"] == done["status"]["servedReplicas"] == 1
    finally:
        second.stop()
