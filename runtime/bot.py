"""``DynaBot``: one configured bot. Chats are stored per (bot, client, conversation)."""

from __future__ import annotations

import dataclasses
import logging
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
)
from .errors import StorageError
from .ids import validate_bot_id
from .llm.base import (
    ChatMessage,
    Completion,
    Delta,
    LLMProvider,
    Settings,
    UsageSink,
    joined,
)
from .llm.fallback import FallbackProvider
from .persistence.times import utc_now
from .schema import BotConfig
from .tools import Toolset
from .turns import added_usage, checked_new, reply_to_store, stateless_prompt, stored_prompt

log = logging.getLogger("kubebots.runtime.bot")

Release = Callable[[], Awaitable[None]]

#: A bot with a ``conversationStorage.retentionDays`` prunes its old messages at most this often,
#: after storing a turn (one indexed DELETE; the first turn after a (re)build prunes at once).
PRUNE_INTERVAL = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class BotVersion:
    """Where a bot's config came from: the config store's revision and the Bot's generation."""

    revision: int
    generation: int
    uid: str = ""


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
        tools: Toolset | None = None,
    ) -> None:
        self.bot_id = validate_bot_id(bot_id)
        self.config = config
        self.version = version
        self._llm = llm
        #: the server-side tools the model may call (None: none declared)
        self.tools = tools
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
        new = checked_new(self.config, messages)
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
                    usage = added_usage(completion.usage, again.usage)
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
        new = checked_new(self.config, messages)
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
        the bot's memory window (:func:`~kubebots.runtime.turns.stateless_prompt`).
        ``settings`` as in :meth:`complete`."""
        with self._life.operation():
            return await self._llm.complete(
                stateless_prompt(self.config, messages), settings=settings
            )

    async def stream_messages(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[Delta, None]:
        """Like :meth:`complete_messages`, as the provider's deltas (text, tool call pieces,
        the finish reason); ``on_usage`` as in :meth:`stream_chat`."""
        prompt = stateless_prompt(self.config, messages)
        with self._life.operation():
            async for delta in self._llm.stream(prompt, settings=settings, on_usage=on_usage):
                yield delta

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
            try:
                await self._llm.close()
            finally:
                if self.tools is not None:
                    await self.tools.close()
        finally:
            if self._extra_release is not None:
                await self._extra_release()

    # -- internals --------------------------------------------------------------------------
    def _key(self, context: BotContext) -> ConversationKey:
        return ConversationKey(self.bot_id, context.client_id, context.conversation_id)

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

    async def _store_turn(
        self, key: ConversationKey, new: list[NewMessage], reply: Completion, after: int | None
    ) -> None:
        await self._storage.append(key, [*new, reply_to_store(reply)], after=after)

    async def _prompt(
        self, key: ConversationKey, messages: Sequence[ChatMessage]
    ) -> tuple[list[ChatMessage], int]:
        """The prompt of a turn adding ``messages`` (:func:`~kubebots.runtime.turns.stored_prompt`)
        and the last seq of the conversation it saw."""
        recent = await self._storage.recent(key, max(self.config.memory.max_messages, 1))
        return stored_prompt(self.config, recent, messages), recent[-1].seq if recent else 0

    def __repr__(self) -> str:
        return f"<DynaBot {self.bot_id!r} provider={self.config.llm.provider}>"
