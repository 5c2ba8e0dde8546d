"""End-to-end scenarios: kubectl -> kube-apiserver -> operator -> PostgreSQL store -> runtime.

The operator and the runtimes run as real processes with the deploy/ ServiceAccounts' tokens
(see conftest.py); nothing here talks to them other than through kubectl and HTTP.
"""

from __future__ import annotations

import signal
import textwrap

import pytest

from tests.e2e.conftest import (
    REPLICA_MAX_AGE,
    Stack,
    is_ready_for_generation,
    ready_reason,
    wait_until,
)
from runtime.testing.fake_openai import FakeOpenAIServer


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
def fake_openai() -> FakeOpenAIServer:
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
