"""Bots with tools for the tool loop's tests: Python function tools (real implementations, run by
the real :class:`Toolset`), an in-memory conversation store, any provider."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubebots.runtime import BotContext, DynaBot
from kubebots.runtime.conversations import ConversationStore, StoredMessage
from kubebots.runtime.conversations.memory import MemoryConversationStore
from kubebots.runtime.errors import ToolError
from kubebots.runtime.llm.base import ChatMessage, Completion, LLMProvider, Settings
from kubebots.runtime.llm.echo import EchoProvider
from kubebots.runtime.schema import parse_bot_config
from kubebots.runtime.tools import FunctionSource, FunctionTool, Toolset, ToolSpec

CTX = BotContext(conversation_id="c1", client_id="tenant-a")
NUMBERS = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}


@dataclass
class Tools:
    """The tools' side effects, for the tests to check: the calls each tool got."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ping_ready: asyncio.Event = field(default_factory=asyncio.Event)
    pong_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def functions(self) -> list[FunctionTool]:
        return [
            FunctionTool(ToolSpec("add", "Adds a and b", NUMBERS, source="function"), self.add),
            FunctionTool(ToolSpec("weather", "The weather of a city"), self.weather),
            FunctionTool(ToolSpec("ping", "Waits for pong"), self.ping),
            FunctionTool(ToolSpec("pong", "Waits for ping"), self.pong),
            FunctionTool(ToolSpec("boom", "Always fails"), self.boom),
            FunctionTool(ToolSpec("refuse", "Fails with a message"), self.refuse),
            FunctionTool(ToolSpec("slow", "Takes its time", timeout=0.1), self.slow),
            FunctionTool(ToolSpec("deploy", "Deploys", requires_approval=True), self.deploy),
            FunctionTool(ToolSpec("wipe", "Wipes", requires_approval=True), self.wipe),
        ]

    async def add(self, a: float, b: float) -> Any:
        self.calls.append(("add", {"a": a, "b": b}))
        return {"sum": a + b}

    def weather(self, city: str = "Paris") -> str:
        self.calls.append(("weather", {"city": city}))
        return f"sunny in {city}"

    async def ping(self) -> str:
        """Returns once pong runs too: only a parallel run of both answers in time."""
        self.calls.append(("ping", {}))
        self.ping_ready.set()
        await asyncio.wait_for(self.pong_ready.wait(), 2.0)
        return "ping saw pong"

    async def pong(self) -> str:
        self.calls.append(("pong", {}))
        self.pong_ready.set()
        await asyncio.wait_for(self.ping_ready.wait(), 2.0)
        return "pong saw ping"

    def boom(self) -> str:
        self.calls.append(("boom", {}))
        raise ValueError("a secret detail the model must not see")

    def refuse(self) -> str:
        self.calls.append(("refuse", {}))
        raise ToolError("the city is unknown")

    async def slow(self) -> str:
        self.calls.append(("slow", {}))
        await asyncio.sleep(10)
        return "late"

    def deploy(self, env: str = "prod") -> str:
        self.calls.append(("deploy", {"env": env}))
        return f"deployed to {env}"

    def wipe(self) -> str:
        self.calls.append(("wipe", {}))
        return "wiped"


class EchoLog(EchoProvider):
    """The echo provider, recording each prompt it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[list[ChatMessage]] = []

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        self.prompts.append(list(messages))
        return await super().complete(messages, settings=settings)


async def tool_bot(
    llm: LLMProvider | None = None,
    *,
    functions: Tools | None = None,
    storage: ConversationStore | None = None,
    **spec: Any,
) -> tuple[DynaBot, Tools]:
    """A bot (``spec`` as a Bot's spec) with :class:`Tools` as its function tools."""
    tools = functions or Tools()
    toolset = await Toolset.open([FunctionSource(tools.functions())], bot_id="bot")
    config = parse_bot_config({"llm": {"provider": "echo"}, **spec})
    storage = storage or MemoryConversationStore()
    bot = DynaBot("bot", config, llm=llm or EchoProvider(), storage=storage, tools=toolset)
    return bot, tools


def shapes(history: list[StoredMessage]) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """``(role, content, called tool names, answered call id)`` per stored message."""
    return [
        (m.role, m.content, tuple(c.name for c in m.tool_calls), m.tool_call_id) for m in history
    ]


def arguments(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value
