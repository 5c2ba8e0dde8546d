"""One turn on a stored conversation: read its window, run the tool loop, store what it added.

:class:`~kubebots.runtime.bot.DynaBot` holds the conversation's turn lock around
:func:`stored_turn`. The turn's new messages (a user message, or the client's answers to its
tools' calls), every tool step (the assistant message with its calls, one ``tool`` message per
call) and the final reply are stored in order, in one append, at the end of the turn, or when it
stops for approval (then without a final reply: the calls waiting are the conversation's open
calls, which a resumed turn answers before the loop goes on). Every message stored is tagged
with the generation of the Bot that ran the turn (see
:attr:`~kubebots.runtime.bot.DynaBot.generation`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Container, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from . import tracing
from .conversations.base import (
    ConversationChanged,
    ConversationKey,
    ConversationStore,
    NewMessage,
    StoredMessage,
)
from .llm.base import ChatMessage, UsageSink
from .schema import BotConfig
from .tool_loop import LoopEvent, LoopState, ToolLoop
from .tools import TurnCompletion
from .turns import (
    added_usage,
    check_decisions,
    check_not_awaiting_approval,
    check_room,
    checked_new,
    open_calls,
    stored_prompt,
    stored_window,
    to_store,
)


@dataclass(frozen=True, slots=True)
class TurnInput:
    """What a stored turn adds: new ``messages``, or the decisions (``approvals``: call id ->
    approved) on the calls waiting; streamed or not, and who is told the turn's usage."""

    messages: Sequence[ChatMessage] = ()
    approvals: Mapping[str, bool] | None = None
    stream: bool = False
    on_usage: UsageSink | None = None

    def checked(self, config: BotConfig) -> list[NewMessage]:
        """The new messages as the store takes them (checked: :func:`checked_new`)."""
        if self.approvals is not None:
            return []
        return checked_new(config, self.messages)


@dataclass(frozen=True, slots=True)
class StoredTurn:
    """A bot's stored conversation ``key``: its config, store, server tool names and the
    generation its messages are tagged with (None: none recorded)."""

    config: BotConfig
    storage: ConversationStore
    key: ConversationKey
    server_tools: Container[str]
    generation: int | None = None

    async def run(
        self, loop: ToolLoop, turn: TurnInput, new: list[NewMessage]
    ) -> AsyncGenerator[LoopEvent | TurnCompletion, None]:
        """The turn's events, then its :class:`TurnCompletion`, once stored.

        The append names the position the window ended at only when the turn is not streamed
        and no tool ran: if another writer (replica) stored a turn meanwhile, the model is asked
        once more with the fresh history (usage summed). Otherwise (a reply already sent, a tool
        already run: never run twice) the turn is stored after whatever is there."""
        recent = await self._recent()
        state = LoopState()
        async for event in self._events(loop, recent, turn, state):
            yield event
        after = _seq(recent)
        if turn.stream or state.ran_tools or turn.approvals is not None:
            await self._store(new, state, None)
            yield state.completion()
            return
        try:
            await self._store(new, state, after)
        except ConversationChanged:
            recent = await self._recent()  # the store forgot its window: this reads it afresh
            again = LoopState()
            async for _ in self._events(loop, recent, TurnInput(turn.messages), again):
                pass
            again.usage = added_usage(state.usage, again.usage)
            state = again
            try:
                await self._store(new, state, _seq(recent))
            except ConversationChanged:
                await self._store(new, state, None)
        yield state.completion()

    def _events(
        self,
        loop: ToolLoop,
        recent: Sequence[StoredMessage],
        turn: TurnInput,
        state: LoopState,
    ) -> AsyncGenerator[LoopEvent, None]:
        """The loop on ``recent``; the new messages (or decisions) are checked against it
        first, so a refused turn asks nothing and runs nothing."""
        pending = open_calls(recent)
        stream, on_usage = turn.stream, turn.on_usage
        if turn.approvals is None:
            check_not_awaiting_approval(pending, self.server_tools)
            prompt = stored_prompt(self.config, recent, turn.messages)
            return loop.run(prompt, state, stream=stream, on_usage=on_usage)
        check_decisions(pending, turn.approvals)
        check_room(self.config, recent, len(pending))
        prompt = stored_window(self.config, recent, answering=True)
        return loop.resume(prompt, pending, turn.approvals, state, stream=stream, on_usage=on_usage)

    async def _store(self, new: list[NewMessage], state: LoopState, after: int | None) -> None:
        added = [to_store(m) for m in state.added]
        messages = [replace(m, generation=self.generation) for m in (*new, *added)]
        with self._span("append", {"kubebots.conversation.messages": len(messages)}):
            await self.storage.append(self.key, messages, after=after)

    async def _recent(self) -> list[StoredMessage]:
        """The memory window's messages, reaching back to the last call group's assistant
        message (the answers of a long parallel call may outnumber the window)."""
        limit = max(self.config.memory.max_messages, 1)
        with self._span("recent", {}) as span:
            while True:
                recent = await self.storage.recent(self.key, limit)
                if len(recent) < limit or any(m.role != "tool" for m in recent):
                    span.set_attribute("kubebots.conversation.messages", len(recent))
                    return recent
                limit *= 2

    def _span(self, operation: str, attributes: dict[str, str | int]) -> tracing.SpanBlock:
        """A span around one call of the conversation store (``db.system``: its backend)."""
        backend = self.config.conversation_storage.backend
        system = _DB_SYSTEMS.get(backend, backend)
        attributes.update({"db.system": system, "db.operation.name": operation})
        attributes["kubebots.bot.id"] = self.key.bot_id
        return tracing.span(f"{operation} conversation", attributes, kind="client")


#: ``db.system`` of a conversation store backend (OpenTelemetry's names where there is one).
_DB_SYSTEMS = {"postgres": "postgresql"}


def _seq(recent: Sequence[StoredMessage]) -> int:
    return recent[-1].seq if recent else 0


async def completion_of(
    events: AsyncGenerator[LoopEvent | TurnCompletion, None],
) -> TurnCompletion:
    """The :class:`TurnCompletion` a stored turn's events end with (the events are closed)."""
    async with aclosing(events):
        async for event in events:
            if isinstance(event, TurnCompletion):
                return event
    raise AssertionError("a stored turn ends with its completion")
