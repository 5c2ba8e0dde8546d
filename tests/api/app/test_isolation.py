"""Tenant isolation, property-based: two clients using the SAME conversation id never meet.

Over random conversation ids and message texts, tenant-a (HEADERS_A) holds a conversation and
tenant-b (HEADERS_B) tries everything with the same id: reading, listing, deleting, claiming
tenant-a's identity, and writing (``/chat``, ``/chat/stream`` or a stateful OpenAI completion).
tenant-b only ever reaches a conversation of its own, which never contains tenant-a's messages
(neither stored nor sent to the LLM), and tenant-a's conversation stays exactly as it was.

Conversation ids are printable text without control characters (what the API accepts) and
without ``/``: the API accepts an id holding ``/`` in a chat body and lists it, but can never
read or delete it (the server decodes ``%2F`` before routing, so no path segment reaches it),
a runtime limitation kept out of this property. The OpenAI route carries the id in the
``X-Conversation-Id`` header, so it is drawn only for ids that survive as a header value (ASCII,
no outer whitespace); for other ids that draw falls back to ``/chat``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A, HEADERS_B
from .helpers import TIMEOUT, assert_error, conversation_path, default_bots_server

BOTS = ("default:echo", "default:gpt")

CONVERSATION_IDS = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/"),
    min_size=1,
    max_size=256,
)
MESSAGES = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), include_characters="\n\t"),
    min_size=1,
    max_size=300,
).filter(lambda text: text.strip() != "")  # the bots refuse blank messages


#: One connection per request: ThreadedServer's listening socket is made with protocol 0, so
#: asyncio never sets TCP_NODELAY on its connections and every request after the first on a
#: kept-alive connection waits ~40 ms (Nagle + delayed ACK). A new connection costs ~1 ms.
FRESH_CONNECTIONS: dict[str, Any] = {
    "timeout": TIMEOUT,
    "limits": httpx.Limits(max_keepalive_connections=0),
}


@dataclass
class Tenants:
    server: ThreadedServer
    a: httpx.Client
    b: httpx.Client
    fake: FakeOpenAIServer


@pytest.fixture(scope="module")
def tenants(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAIServer
) -> Iterator[Tenants]:
    with (
        default_bots_server(tmp_path_factory.mktemp("isolation"), fake_llm) as server,
        httpx.Client(base_url=server.url, headers=HEADERS_A, **FRESH_CONNECTIONS) as a,
        httpx.Client(base_url=server.url, headers=HEADERS_B, **FRESH_CONNECTIONS) as b,
    ):
        yield Tenants(server, a, b, fake_llm)


def reply(bot_id: str, message: str) -> str:
    return f"echo: {message}" if bot_id == "default:echo" else f"[fake-model] be brief | {message}"


def chat(client: httpx.Client, bot_id: str, cid: str, message: str) -> None:
    response = client.post(
        f"/bots/{bot_id}/chat", json={"message": message, "conversation_id": cid}
    )
    assert response.status_code == 200, response.text
    assert response.json()["response"] == reply(bot_id, message)
    assert response.json()["conversation_id"] == cid


def chat_stream(client: httpx.Client, bot_id: str, cid: str, message: str) -> None:
    with client.stream(
        "POST", f"/bots/{bot_id}/chat/stream", json={"message": message, "conversation_id": cid}
    ) as response:
        assert response.status_code == 200, response.read()
        events = [json.loads(line[6:]) for line in response.iter_lines() if line[:6] == "data: "]
    assert "".join(e.get("delta", "") for e in events[:-1]) == reply(bot_id, message)
    done = events[-1]
    assert done.pop("usage")["total_tokens"] > 0
    assert done == {"conversation_id": cid, "bot_id": bot_id, "status": "completed"}


def openai_turn(client: httpx.Client, bot_id: str, cid: str, message: str) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={"model": bot_id, "messages": [{"role": "user", "content": message}]},
        headers={"X-Conversation-Id": cid},
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == reply(bot_id, message)


def header_safe(cid: str) -> bool:
    """Whether ``cid`` survives as an HTTP header value unchanged (ASCII, no outer spaces)."""
    return cid.isascii() and cid == cid.strip()


def listed(client: httpx.Client, bot_id: str) -> list[str]:
    response = client.get(f"/bots/{bot_id}/conversations")
    assert response.status_code == 200, response.text
    found: list[str] = response.json()["conversations"]
    return found


def contents(conversation: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in conversation["messages"]]


def turns(bot_id: str, messages: list[str]) -> list[tuple[str, str]]:
    return [pair for m in messages for pair in (("user", m), ("assistant", reply(bot_id, m)))]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    bot_id=st.sampled_from(BOTS),
    cid=CONVERSATION_IDS,
    a_messages=st.lists(MESSAGES, min_size=1, max_size=3),
    b_message=MESSAGES,
    b_route=st.sampled_from(["chat", "stream", "openai"]),
)
def test_another_client_never_reaches_a_conversation_with_the_same_id(
    tenants: Tenants,
    bot_id: str,
    cid: str,
    a_messages: list[str],
    b_message: str,
    b_route: str,
) -> None:
    a, b, fake = tenants.a, tenants.b, tenants.fake
    path = conversation_path(bot_id, cid)
    for client in (a, b):  # examples may repeat an id: start from nothing
        assert client.delete(path).status_code in (200, 404)

    for message in a_messages:
        chat(a, bot_id, cid, message)
    original = a.get(path)
    assert original.status_code == 200, original.text
    snapshot = original.json()
    assert snapshot["client_id"] == "tenant-a" and snapshot["conversation_id"] == cid
    assert contents(snapshot) == turns(bot_id, a_messages)

    def a_unchanged() -> None:
        assert a.get(path).json() == snapshot

    # tenant-b cannot read, list or delete tenant-a's conversation
    body = assert_error(b.get(path), 404, "ConversationNotFoundError")
    assert body["detail"] == {"conversation_id": cid}
    assert cid in listed(a, bot_id)
    assert cid not in listed(b, bot_id)
    assert_error(b.delete(path), 404, "ConversationNotFoundError")
    a_unchanged()

    # nor claim tenant-a's identity, in the body or the query
    claim = {"message": b_message, "conversation_id": cid, "client_id": "tenant-a"}
    for route in ("chat", "chat/stream"):
        assert_error(b.post(f"/bots/{bot_id}/{route}", json=claim), 403, "PermissionDeniedError")
    as_a = {"client_id": "tenant-a"}
    assert_error(b.get(path, params=as_a), 403, "PermissionDeniedError")
    assert_error(b.delete(path, params=as_a), 403, "PermissionDeniedError")
    assert_error(b.get(f"/bots/{bot_id}/conversations", params=as_a), 403, "PermissionDeniedError")
    a_unchanged()

    # tenant-b writing to the same id gets a conversation of its own
    if b_route == "openai" and header_safe(cid):
        openai_turn(b, bot_id, cid, b_message)
    elif b_route == "stream":
        chat_stream(b, bot_id, cid, b_message)
    else:
        chat(b, bot_id, cid, b_message)
    if bot_id == "default:gpt":  # the LLM saw tenant-b's message alone
        assert fake.requests[-1]["body"]["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": b_message},
        ]
    own = b.get(path)
    assert own.status_code == 200, own.text
    assert own.json()["client_id"] == "tenant-b"
    assert contents(own.json()) == turns(bot_id, [b_message])
    assert cid in listed(b, bot_id)
    a_unchanged()

    # tenant-a's next turn sees its own history only
    chat(a, bot_id, cid, "and one more")
    if bot_id == "default:gpt":
        sent = fake.requests[-1]["body"]["messages"]
        assert [(m["role"], m["content"]) for m in sent[1:]] == [
            *turns(bot_id, a_messages),
            ("user", "and one more"),
        ]
    grown = a.get(path).json()
    assert contents(grown) == turns(bot_id, [*a_messages, "and one more"])
    assert grown["messages"][: len(snapshot["messages"])] == snapshot["messages"]
    snapshot = grown

    # tenant-b deleting the id deletes its own conversation only
    assert b.delete(path).json() == {"deleted": True, "bot_id": bot_id, "conversation_id": cid}
    assert_error(b.get(path), 404, "ConversationNotFoundError")
    a_unchanged()
    assert a.delete(path).status_code == 200
