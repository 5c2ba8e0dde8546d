"""``DynaBot``: one configured bot. Chats are stored per (bot, client, conversation)."""

from __future__ import annotations

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
    StoredMessage,
)
from .errors import MessageRejectedError, StorageError
from .ids import validate_bot_id
from .llm.base import ChatMessage, Completion, LLMProvider, Usage, UsageSink
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
    user/assistant; a turn reads only the memory window, so its cost does not grow with the
    conversation. A turn is stored only after the position its window ended at (the store's
    ``after``): if another replica stored a turn on the same conversation meanwhile,
    :meth:`complete` answers once more from the fresh history (see there).
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

    async def complete(self, message: str, context: BotContext) -> Completion:
        """Like :meth:`chat`, with token usage when the provider reports it.

        If another writer (another replica) stored a turn on the conversation while the model
        answered, the reply did not see it: the model is asked once more with the fresh history,
        and that reply is stored and returned, its usage covering both calls. Should the
        conversation change again meanwhile, that reply is stored after whatever is there.
        """
        key = self._key(context)
        self._check(message)
        with self._life.operation():
            async with self._turns.hold(key):
                prompt, after = await self._prompt(key, message)
                completion = await self._llm.complete(prompt)
                try:
                    await self._store_turn(key, message, completion.content, after)
                except ConversationChanged:
                    # The store forgot its cached window: this prompt reads the stored one.
                    prompt, after = await self._prompt(key, message)
                    again = await self._llm.complete(prompt)
                    completion = Completion(again.content, _added(completion.usage, again.usage))
                    try:
                        await self._store_turn(key, message, completion.content, after)
                    except ConversationChanged:
                        await self._store_turn(key, message, completion.content, None)
            await self._prune_if_due()
            return completion

    async def stream_chat(
        self, message: str, context: BotContext, *, on_usage: UsageSink | None = None
    ) -> AsyncGenerator[str, None]:
        """Yield the reply as text deltas; the turn is stored once the stream completes.
        ``on_usage`` gets the reply's token usage if the provider reports it.

        A stream abandoned part-way stores nothing (close it with ``aclose()`` to free the turn).
        A reply already sent cannot be asked again: if another writer stored a turn on the
        conversation meanwhile, this one is stored after it all the same.
        """
        key = self._key(context)
        self._check(message)
        with self._life.operation():
            async with self._turns.hold(key):
                prompt, _ = await self._prompt(key, message)
                parts: list[str] = []
                async for delta in self._llm.stream(prompt, on_usage=on_usage):
                    parts.append(delta)
                    yield delta
                await self._store_turn(key, message, "".join(parts), None)
            await self._prune_if_due()

    # -- stateless (OpenAI-compatible) -------------------------------------------------------
    async def complete_messages(self, messages: Sequence[ChatMessage]) -> Completion:
        """Answer a client-held history (nothing stored): the bot's system prompt comes first,
        then the client's messages, cut to the bot's memory window."""
        with self._life.operation():
            return await self._llm.complete(self._stateless_prompt(messages))

    async def stream_messages(
        self, messages: Sequence[ChatMessage], *, on_usage: UsageSink | None = None
    ) -> AsyncGenerator[str, None]:
        """Like :meth:`complete_messages`, as text deltas (``on_usage`` as in
        :meth:`stream_chat`)."""
        prompt = self._stateless_prompt(messages)
        with self._life.operation():
            async for delta in self._llm.stream(prompt, on_usage=on_usage):
                yield delta

    def _stateless_prompt(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        if not messages or messages[-1].role != "user":
            raise MessageRejectedError("the last message must come from the user")
        for message in messages:
            self._check(message.content)
        window = self.config.memory.max_messages
        history = list(messages[:-1])[-window:] if window else []
        prompt = (
            [ChatMessage("system", self.config.system_prompt)] if self.config.system_prompt else []
        )
        return [*prompt, *history, messages[-1]]

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

    async def _store_turn(
        self, key: ConversationKey, message: str, reply: str, after: int | None
    ) -> None:
        await self._storage.append(key, [("user", message), ("assistant", reply)], after=after)

    async def _prompt(self, key: ConversationKey, message: str) -> tuple[list[ChatMessage], int]:
        """The prompt of a turn, and the last seq of the conversation it saw."""
        window = self.config.memory.max_messages
        recent = await self._storage.recent(key, max(window, 1))
        held = recent[-1].seq if recent else 0
        cap = self.config.limits.max_history_messages
        if held + 2 > cap:
            raise MessageRejectedError(
                f"conversation holds {held} messages; this bot keeps at most {cap}",
                detail={"max_history_messages": cap},
            )
        history = recent[-window:] if window else []
        if history and history[0].role == "assistant":
            history = history[1:]  # a window starts at a user turn
        prompt: list[ChatMessage] = []
        if self.config.system_prompt:
            prompt.append(ChatMessage("system", self.config.system_prompt))
        prompt.extend(ChatMessage(m.role, m.content) for m in history)
        prompt.append(ChatMessage("user", message))
        return prompt, held

    def __repr__(self) -> str:
        return f"<DynaBot {self.bot_id!r} provider={self.config.llm.provider}>"
