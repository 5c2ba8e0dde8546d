"""``DynaBot``: one configured bot. Chats are stored per (bot, client, conversation)."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._lifecycle import Lifecycle
from ._locks import KeyedLocks
from .context import BotContext
from .conversations.base import (
    ConversationChanged,
    ConversationKey,
    ConversationStore,
    NewMessage,
    StoredMessage,
    StoredToolCall,
)
from .errors import MessageRejectedError, StorageError
from .ids import validate_bot_id
from .llm.base import (
    ChatMessage,
    Completion,
    Delta,
    LLMProvider,
    Settings,
    ToolCall,
    Usage,
    UsageSink,
    joined,
)
from .llm.fallback import FallbackProvider
from .persistence.times import utc_now
from .schema import BotConfig

log = logging.getLogger("kubebots.runtime.bot")

Release = Callable[[], Awaitable[None]]

#: A bot with a ``conversationStorage.retentionDays`` prunes its old messages at most this often,
#: after storing a turn (one indexed DELETE; the first turn after a (re)build prunes at once).
PRUNE_INTERVAL = timedelta(minutes=10)


def _added(first: Usage | None, second: Usage | None) -> Usage | None:
    """The usage of two calls (either may be unreported)."""
    if first is None or second is None:
        return first or second
    return Usage(
        first.prompt_tokens + second.prompt_tokens,
        first.completion_tokens + second.completion_tokens,
    )


def _to_chat(message: StoredMessage) -> ChatMessage:
    calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in message.tool_calls)
    return ChatMessage(message.role, message.content, calls, message.tool_call_id)


def _to_store(message: ChatMessage) -> NewMessage:
    if message.role == "system":
        raise MessageRejectedError("a stored conversation holds no system messages")
    calls = tuple(StoredToolCall(c.id, c.name, c.arguments) for c in message.tool_calls)
    return NewMessage(message.role, message.content, calls, message.tool_call_id)


@dataclass(frozen=True, slots=True)
class BotVersion:
    """Where a bot's config came from: the config store's revision and the Bot's generation."""

    revision: int
    generation: int
    uid: str = ""


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: C0 controls and DEL, except tab, line feed and carriage return (ESC would reach terminals and
#: logs that render the stored text; none belongs in a chat message).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class DynaBot:
    """A bot built from a :class:`BotConfig`: an LLM provider plus conversation storage.

    Turns on one conversation are serialized in this process, so history always alternates
    user (or tool answers) and assistant; a turn reads only the memory window, so its cost does
    not grow with the conversation. A turn is stored only after the position its window ended
    at (the store's ``after``): if another replica stored a turn on the same conversation
    meanwhile, :meth:`complete_stored` answers once more from the fresh history (see there).
    """

    def __init__(
        self,
        bot_id: str,
        config: BotConfig,
        *,
        llm: LLMProvider,
        storage: ConversationStore,
        release: Release | None = None,
        version: BotVersion | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.bot_id = validate_bot_id(bot_id)
        self.config = config
        self.version = version
        self._llm = llm
        self._storage = storage
        self._extra_release = release
        self._turns: KeyedLocks[ConversationKey] = KeyedLocks()
        self._life = Lifecycle(self.bot_id, self._release)
        self._clock = clock
        self._next_prune: datetime | None = None  # None: at the next stored turn

    # -- chat -------------------------------------------------------------------------------
    async def chat(self, message: str, context: BotContext) -> str:
        """Answer ``message`` in the conversation of ``context``; the turn is stored on success."""
        return (await self.complete(message, context)).content

    async def complete(
        self, message: str, context: BotContext, *, settings: Settings | None = None
    ) -> Completion:
        """Like :meth:`chat`, with token usage when the provider reports it. ``settings`` (the
        request's, bounded by the caller) go to the provider, over the Bot's defaults."""
        return await self.complete_stored(
            [ChatMessage("user", message)], context, settings=settings
        )

    async def stream_chat(
        self,
        message: str,
        context: BotContext,
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield the reply as non-empty text deltas; the turn is stored once the stream
        completes (as :meth:`stream_stored` does). ``settings`` as in :meth:`complete`;
        ``on_usage`` gets the reply's token usage if the provider reports it."""
        deltas = self.stream_stored(
            [ChatMessage("user", message)], context, settings=settings, on_usage=on_usage
        )
        try:
            async for delta in deltas:
                if delta.content:
                    yield delta.content
        finally:
            await deltas.aclose()

    async def complete_stored(
        self,
        messages: Sequence[ChatMessage],
        context: BotContext,
        *,
        settings: Settings | None = None,
    ) -> Completion:
        """Answer the new ``messages`` in the conversation of ``context``; they and the reply
        (its text and tool calls) are stored, in order, on success.

        ``messages`` are one user message, or the ``tool`` messages answering every call of
        the conversation's last message (an assistant's tool calls, each answered once); the
        prompt is the system prompt, the memory window (see :meth:`_prompt`), then them.

        If another writer (another replica) stored a turn on the conversation while the model
        answered, the reply did not see it: the model is asked once more with the fresh history,
        and that reply is stored and returned, its usage covering both calls. Should the
        conversation change again meanwhile, that reply is stored after whatever is there.
        """
        key = self._key(context)
        new = self._checked_new(messages)
        with self._life.operation():
            async with self._turns.hold(key):
                prompt, after = await self._prompt(key, messages)
                completion = await self._llm.complete(prompt, settings=settings)
                try:
                    await self._store_turn(key, new, completion, after)
                except ConversationChanged:
                    # The store forgot its cached window: this prompt reads the stored one.
                    prompt, after = await self._prompt(key, messages)
                    again = await self._llm.complete(prompt, settings=settings)
                    usage = _added(completion.usage, again.usage)
                    completion = dataclasses.replace(again, usage=usage)
                    try:
                        await self._store_turn(key, new, completion, after)
                    except ConversationChanged:
                        await self._store_turn(key, new, completion, None)
            await self._prune_if_due()
            return completion

    async def stream_stored(
        self,
        messages: Sequence[ChatMessage],
        context: BotContext,
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[Delta, None]:
        """Like :meth:`complete_stored`, as the provider's deltas (text, tool call pieces, the
        finish reason); the turn (the reply the deltas join into) is stored once the stream
        completes. ``on_usage`` gets the reply's token usage if the provider reports it.

        A stream abandoned part-way stores nothing (close it with ``aclose()`` to free the turn).
        A reply already sent cannot be asked again: if another writer stored a turn on the
        conversation meanwhile, this one is stored after it all the same.
        """
        key = self._key(context)
        new = self._checked_new(messages)
        with self._life.operation():
            async with self._turns.hold(key):
                prompt, _ = await self._prompt(key, messages)
                deltas: list[Delta] = []
                async for delta in self._llm.stream(prompt, settings=settings, on_usage=on_usage):
                    deltas.append(delta)
                    yield delta
                await self._store_turn(key, new, joined(deltas), None)
            await self._prune_if_due()

    # -- stateless (OpenAI-compatible) -------------------------------------------------------
    async def complete_messages(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        """Answer a client-held history (nothing stored): the bot's system prompt comes first,
        then the client's messages (tool calls and tool results included, in order), cut to
        the bot's memory window (see :meth:`_stateless_prompt`). ``settings`` as in
        :meth:`complete`."""
        with self._life.operation():
            return await self._llm.complete(self._stateless_prompt(messages), settings=settings)

    async def stream_messages(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[Delta, None]:
        """Like :meth:`complete_messages`, as the provider's deltas (text, tool call pieces,
        the finish reason); ``on_usage`` as in :meth:`stream_chat`."""
        prompt = self._stateless_prompt(messages)
        with self._life.operation():
            async for delta in self._llm.stream(prompt, settings=settings, on_usage=on_usage):
                yield delta

    def _stateless_prompt(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The system prompt, then the last message and the ``memory.maxMessages`` before it.

        The last message is the user's or a tool result. The window never splits an assistant
        message's tool calls from their ``tool`` answers: a window that would start at a
        ``tool`` message starts at the assistant message that made the calls instead (a few
        messages more), so the answered calls always reach the model with their results.
        """
        if not messages or messages[-1].role not in ("user", "tool"):
            raise MessageRejectedError("the last message must come from the user or a tool")
        for message in messages:
            if message.role == "user":
                self._check(message.content)
            else:  # an assistant making tool calls (or a tool) may say nothing
                self._check_text(message.content)
        start = max(0, len(messages) - 1 - self.config.memory.max_messages)
        while start > 0 and messages[start].role == "tool":
            start -= 1
        prompt = (
            [ChatMessage("system", self.config.system_prompt)] if self.config.system_prompt else []
        )
        return [*prompt, *messages[start:]]

    # -- conversations ----------------------------------------------------------------------
    async def get_history(
        self, context: BotContext, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        with self._life.operation():
            return await self._storage.history(self._key(context), offset=offset, limit=limit)

    async def conversation_exists(self, context: BotContext) -> bool:
        with self._life.operation():
            return await self._storage.exists(self._key(context))

    async def delete_conversation(self, context: BotContext) -> bool:
        key = self._key(context)
        with self._life.operation():
            async with self._turns.hold(key):
                return await self._storage.delete(key)

    async def list_conversations(self, client_id: str) -> list[str]:
        with self._life.operation():
            return await self._storage.list_conversations(self.bot_id, client_id)

    @property
    def serving_fallback(self) -> str | None:
        """The ``model@host`` label of the ``llm.fallbacks`` endpoint that answered the last LLM
        call, or None (the primary answered, nothing was asked yet, or the provider has no
        fallbacks)."""
        return self._llm.serving_fallback if isinstance(self._llm, FallbackProvider) else None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._life.closed

    @property
    def inflight(self) -> int:
        return self._life.inflight

    async def close(self) -> None:
        """Let in-flight chats finish, then release the LLM client and storage. Idempotent."""
        await self._life.close()

    async def wait_closed(self) -> None:
        await self._life.wait_closed()

    async def _release(self) -> None:
        try:
            await self._llm.close()
        finally:
            if self._extra_release is not None:
                await self._extra_release()

    # -- internals --------------------------------------------------------------------------
    def _key(self, context: BotContext) -> ConversationKey:
        return ConversationKey(self.bot_id, context.client_id, context.conversation_id)

    def _check(self, message: str) -> None:
        if not isinstance(message, str) or not message.strip():
            raise MessageRejectedError("message must be a non-empty string")
        self._check_text(message)

    def _check_text(self, message: str) -> None:
        """Reject control characters, unpaired surrogates and text over the bot's limit."""
        if _CONTROL.search(message) or _LONE_SURROGATE.search(message):
            raise MessageRejectedError(
                "message must not contain control characters (other than tab and line breaks) "
                "or unpaired surrogates"
            )
        limit = self.config.limits.max_message_chars
        if len(message) > limit:
            raise MessageRejectedError(
                f"message is {len(message)} characters; this bot accepts at most {limit}",
                detail={"max_message_chars": limit, "length": len(message)},
            )

    async def _prune_if_due(self) -> None:
        """Delete this bot's messages older than its retention, at most every
        :data:`PRUNE_INTERVAL`. A store that fails is logged (the turn is stored already) and
        tried again after the interval."""
        days = self.config.conversation_storage.retention_days
        now = self._clock()
        if days is None or (self._next_prune is not None and now < self._next_prune):
            return
        self._next_prune = now + PRUNE_INTERVAL  # set before awaiting: one prune at a time
        try:
            pruned = await self._storage.prune(self.bot_id, now - timedelta(days=days))
        except StorageError as exc:
            log.warning(f"bot {self.bot_id}: pruning messages older than {days} days failed: {exc}")
            return
        if pruned:
            log.info(f"bot {self.bot_id}: pruned {pruned} message(s) older than {days} days")

    def _checked_new(self, messages: Sequence[ChatMessage]) -> list[NewMessage]:
        """A stored turn's new ``messages`` (one user message, or tool answers), checked, as
        the store takes them."""
        roles = {m.role for m in messages}
        if not (len(messages) == 1 and roles == {"user"}) and roles != {"tool"}:
            raise MessageRejectedError(
                "a stored turn takes one user message, or the tool messages answering the "
                "conversation's last tool calls"
            )
        for message in messages:
            if message.tool_calls or (message.role == "tool") != bool(message.tool_call_id):
                raise MessageRejectedError("a tool message, and only it, names a tool_call_id")
            if message.role == "user":
                self._check(message.content)
            else:
                self._check_text(message.content)
                self._check_text(message.tool_call_id or "")
        return [_to_store(m) for m in messages]

    async def _store_turn(
        self, key: ConversationKey, new: list[NewMessage], reply: Completion, after: int | None
    ) -> None:
        calls = tuple(StoredToolCall(c.id, c.name, c.arguments) for c in reply.tool_calls)
        answer = NewMessage("assistant", reply.content, calls)
        await self._storage.append(key, [*new, answer], after=after)

    @staticmethod
    def _check_answers(last: StoredMessage | None, messages: Sequence[ChatMessage]) -> None:
        """Tool messages must answer each call of the conversation's last message once (and
        a user message may not come while calls wait for their answers)."""
        pending = [c.id for c in last.tool_calls] if last is not None else []
        answered = [m.tool_call_id or "" for m in messages if m.role == "tool"]
        if not answered:
            if pending:
                raise MessageRejectedError(
                    f"the conversation awaits the results of tool calls {pending}: send them "
                    "as tool messages first",
                    detail={"pending_tool_call_ids": pending},
                )
            return
        if sorted(answered) != sorted(pending):
            raise MessageRejectedError(
                f"tool messages answer {answered}, but the conversation's last tool calls are "
                f"{pending}: answer each of them once",
                detail={"pending_tool_call_ids": pending},
            )

    async def _prompt(
        self, key: ConversationKey, messages: Sequence[ChatMessage]
    ) -> tuple[list[ChatMessage], int]:
        """The prompt of a turn adding ``messages``, and the last seq of the conversation it
        saw (the new messages are checked against it, see :meth:`_check_answers`).

        The memory window starts at a user message, so it never splits an assistant's tool
        calls from their answers; when ``messages`` answer tool calls, the message that made
        them is in the prompt even if the window is too short for it.
        """
        window = self.config.memory.max_messages
        recent = await self._storage.recent(key, max(window, 1))
        held = recent[-1].seq if recent else 0
        self._check_answers(recent[-1] if recent else None, messages)
        cap = self.config.limits.max_history_messages
        if held + len(messages) + 1 > cap:
            raise MessageRejectedError(
                f"conversation holds {held} messages; this bot keeps at most {cap}",
                detail={"max_history_messages": cap},
            )
        history = recent[-window:] if window else []
        while history and history[0].role != "user":
            history = history[1:]  # a window starts at a user turn
        if messages[0].role == "tool" and not history:
            history = recent[-1:]  # the calls being answered
        prompt: list[ChatMessage] = []
        if self.config.system_prompt:
            prompt.append(ChatMessage("system", self.config.system_prompt))
        prompt.extend(_to_chat(m) for m in history)
        prompt.extend(messages)
        return prompt, held

    def __repr__(self) -> str:
        return f"<DynaBot {self.bot_id!r} provider={self.config.llm.provider}>"
