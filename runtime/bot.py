"""``DynaBot``: one configured bot. Chats are stored per (bot, client, conversation)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._lifecycle import Lifecycle
from ._locks import KeyedLocks
from .context import BotContext
from .conversations.base import ConversationKey, ConversationStore, StoredMessage
from .errors import StorageError
from .ids import validate_bot_id
from .llm.base import ChatMessage, Delta, LLMProvider, Settings, UsageSink
from .llm.fallback import FallbackProvider
from .llm.traced import TracedProvider
from .persistence.times import utc_now
from .schema import BotConfig
from .stored_turn import StoredTurn, TurnInput, completion_of
from .tool_loop import LoopEvent, LoopLimits, ToolLoop
from .tools import ToolEvent, Toolset, TurnCompletion
from .turns import stateless_prompt

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
    """A bot built from a :class:`BotConfig`: an LLM provider, its tools (the turn's tool
    loop: :mod:`~kubebots.runtime.tool_loop`) and conversation storage.

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
        self._traced = TracedProvider(  # what the tool loop asks: a span per LLM call
            llm, system=config.llm.provider, model=config.llm.model, bot_id=self.bot_id
        )
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
    ) -> TurnCompletion:
        """Like :meth:`chat`, with token usage when the provider reports it (summed over the
        turn's LLM calls), the tool calls that ran and, when the turn stopped for approval, the
        calls waiting for it (``pending``: ``content`` is empty, ``finish_reason``
        ``"tool_calls"``; :meth:`resume` goes on). ``settings`` (the request's, bounded by the
        caller) go to the provider, over the Bot's defaults.

        While calls of the conversation wait for approval, a new message is refused
        (:class:`MessageRejectedError` naming them): they are decided first, never dropped."""
        turn = TurnInput([ChatMessage("user", message)])
        return await completion_of(self._turn(context, turn, settings, approvals=True))

    async def resume(
        self,
        context: BotContext,
        approvals: Mapping[str, bool],
        *,
        settings: Settings | None = None,
    ) -> TurnCompletion:
        """Go on with the turn that stopped for approval: ``approvals`` decides each call
        waiting (call id -> approved), else :class:`MessageRejectedError` naming the ids
        expected (as for unknown ids, or when nothing waits). Approved calls run, rejected ones
        are answered as rejected (the model reads that), then the tool loop goes on (with its
        step and deadline limits afresh) and the turn is stored as :meth:`complete` does."""
        turn = TurnInput(approvals=dict(approvals))
        return await completion_of(self._turn(context, turn, settings, approvals=True))

    def stream_turn(
        self,
        message: str,
        context: BotContext,
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[Delta | ToolEvent, None]:
        """:meth:`complete` as it happens: the text deltas of every LLM call as they come, a
        :class:`ToolStarted` per server tool call before it runs and a :class:`ToolFinished`
        per call after (in call order), :class:`ApprovalRequired` when the turn stops for
        approval, and last a ``Delta`` with the ``finish_reason`` (the client's tool call pieces
        too, for a request declaring ``tools``). The turn is stored once the stream completes;
        a stream abandoned part-way stores nothing (close it with ``aclose()`` to free the turn).
        ``on_usage`` gets the turn's token usage once, if the provider reports it."""
        turn = TurnInput([ChatMessage("user", message)], stream=True, on_usage=on_usage)
        return self._streamed(context, turn, settings)

    def stream_resume(
        self,
        context: BotContext,
        approvals: Mapping[str, bool],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[Delta | ToolEvent, None]:
        """:meth:`resume` as :meth:`stream_turn` streams: the decided calls' events first."""
        turn = TurnInput(approvals=dict(approvals), stream=True, on_usage=on_usage)
        return self._streamed(context, turn, settings)

    async def _streamed(
        self, context: BotContext, turn: TurnInput, settings: Settings | None
    ) -> AsyncGenerator[Delta | ToolEvent, None]:
        """A stored turn's events, without its closing :class:`TurnCompletion`."""
        async with aclosing(self._turn(context, turn, settings, approvals=True)) as events:
            async for event in events:
                if not isinstance(event, TurnCompletion):
                    yield event

    async def stream_chat(
        self,
        message: str,
        context: BotContext,
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[str, None]:
        """The text of :meth:`stream_turn`, as non-empty deltas."""
        events = self.stream_turn(message, context, settings=settings, on_usage=on_usage)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Delta) and event.content:
                    yield event.content

    async def complete_stored(
        self,
        messages: Sequence[ChatMessage],
        context: BotContext,
        *,
        settings: Settings | None = None,
        approvals: bool = False,
    ) -> TurnCompletion:
        """Answer the new ``messages`` in the conversation of ``context`` (the OpenAI-compatible
        routes' stored conversations); they, every tool step and the reply (its text and the
        client's tool calls) are stored in order, in one append, on success.

        ``messages`` are one user message, or the ``tool`` messages answering every open call
        of the conversation (calls of the client's tools); the prompt is the system prompt, the
        memory window (:func:`~kubebots.runtime.turns.stored_window`), then them. Tools that
        require approval are offered only with ``approvals`` (a caller that can :meth:`resume`).

        If another writer (another replica) stored a turn on the conversation while the model
        answered and no tool ran, the model is asked once more with the fresh history, and
        that reply is stored and returned, its usage covering both. Once a tool ran (never run
        twice), or should the conversation change again, the turn is stored after whatever is
        there.
        """
        turn = TurnInput(messages)
        return await completion_of(self._turn(context, turn, settings, approvals=approvals))

    async def stream_stored(
        self,
        messages: Sequence[ChatMessage],
        context: BotContext,
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
        approvals: bool = False,
    ) -> AsyncGenerator[Delta, None]:
        """Like :meth:`complete_stored`, as deltas: the text of every LLM call, the client's
        tool call pieces, and the ``finish_reason`` (no tool events). The turn is stored once
        the stream completes, after whatever is stored by then (a reply already sent cannot be
        asked again). ``on_usage`` gets the turn's usage once, if the provider reports it."""
        turn = TurnInput(messages, stream=True, on_usage=on_usage)
        async with aclosing(self._turn(context, turn, settings, approvals=approvals)) as events:
            async for event in events:
                if isinstance(event, Delta):
                    yield event

    # -- stateless (OpenAI-compatible) -------------------------------------------------------
    async def complete_messages(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> TurnCompletion:
        """Answer a client-held history (nothing stored): the bot's system prompt comes first,
        then the client's messages (tool calls and tool results included, in order), cut to
        the bot's memory window (:func:`~kubebots.runtime.turns.stateless_prompt`).
        ``settings`` as in :meth:`complete`. Server tools run in the loop, unseen by the client
        (the reply is the last LLM call's); tools that require approval are not offered (that
        needs a stored conversation to resume)."""
        loop = self._loop(settings, approvals=False)
        prompt = stateless_prompt(self.config, messages)
        with self._life.operation():
            return await loop.complete(prompt)

    async def stream_messages(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[Delta, None]:
        """Like :meth:`complete_messages`, as deltas: the text of every LLM call, the client's
        tool call pieces and the ``finish_reason``; ``on_usage`` as in :meth:`stream_chat`."""
        loop = self._loop(settings, approvals=False)
        prompt = stateless_prompt(self.config, messages)
        with self._life.operation():
            async with aclosing(loop.deltas(prompt, on_usage=on_usage)) as deltas:
                async for delta in deltas:
                    yield delta

    # -- conversations ----------------------------------------------------------------------
    async def get_history(
        self, context: BotContext, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        with self._life.operation():
            return await self._storage.history(self._key(context), offset=offset, limit=limit)

    async def recent_messages(self, context: BotContext, limit: int) -> list[StoredMessage]:
        """The conversation's last ``limit`` messages, oldest first (the window a turn reads)."""
        with self._life.operation():
            return await self._storage.recent(self._key(context), limit)

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
    def generation(self) -> int | None:
        """The Bot generation this bot was built from (its :class:`BotVersion`'s; None for a
        bot built without one). Every message its turns store is tagged with it, so a
        conversation shows which generation answered it (a rollout routes by it)."""
        return None if self.version is None else self.version.generation

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

    def _loop(self, settings: Settings | None, approvals: bool) -> ToolLoop:
        tools = self.config.tools
        limits = LoopLimits(tools.max_tool_steps, tools.deadline_seconds)
        return ToolLoop(
            self._traced, self.tools, limits=limits, settings=settings, approvals=approvals
        )

    async def _turn(
        self,
        context: BotContext,
        turn: TurnInput,
        settings: Settings | None,
        *,
        approvals: bool,
    ) -> AsyncGenerator[LoopEvent | TurnCompletion, None]:
        """A stored turn's events (:class:`~kubebots.runtime.stored_turn.StoredTurn`), then its
        :class:`TurnCompletion` once stored; the turns of one conversation take turns."""
        key = self._key(context)
        new = turn.checked(self.config)
        loop = self._loop(settings, approvals)
        stored = StoredTurn(self.config, self._storage, key, self.tools or (), self.generation)
        result: TurnCompletion | None = None
        with self._life.operation():
            async with self._turns.hold(key), aclosing(stored.run(loop, turn, new)) as events:
                async for event in events:
                    if isinstance(event, TurnCompletion):
                        result = event
                    else:
                        yield event
            await self._prune_if_due()
        if result is not None:
            yield result

    def __repr__(self) -> str:
        return f"<DynaBot {self.bot_id!r} provider={self.config.llm.provider}>"
