"""The shape every conversation store has.

A conversation is keyed by ``(bot_id, client_id, conversation_id)``: one client can never name
another client's conversation. Storage is append-only (but for :meth:`ConversationStore.prune`,
which a bot's retention uses); a turn's cost depends on the window it reads (``recent``), never on
the conversation's length. An append may name the position it expects to follow (``after``): a
writer that read a window, then called a model, stores its turn only if nobody stored one since
(else :class:`ConversationChanged`).

Besides text, a conversation keeps tool calling as OpenAI's API has it: an ``assistant`` message
may carry the ``tool_calls`` it made (:class:`StoredToolCall`), and a ``tool`` message answers
one of them (its ``tool_call_id``). ``(role, content)`` pairs still append text messages.

Each message may record the ``generation`` of the Bot that produced it (its spec's
``metadata.generation``; None for a bot without one, and for messages stored before the tag
existed): while a Bot rolls out a new generation, a started conversation keeps being answered
by the generation its messages name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple, Protocol, runtime_checkable

MessageRole = Literal["user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class StoredToolCall:
    """A function call an assistant message made; ``arguments`` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append: text, an assistant's ``tool_calls``, or a ``tool`` message's
    answer to the call ``tool_call_id``; ``generation``: the Bot generation that produced it."""

    role: MessageRole
    content: str
    tool_calls: tuple[StoredToolCall, ...] = ()
    tool_call_id: str | None = None
    generation: int | None = None


#: Messages to append, in order: :class:`NewMessage` objects or ``(role, content)`` pairs.
Messages = Sequence[NewMessage | tuple[MessageRole, str]]


class ConversationKey(NamedTuple):
    bot_id: str
    client_id: str
    conversation_id: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int  # 1-based position in the conversation
    role: MessageRole
    content: str
    created_at: datetime  # timezone-aware UTC
    tool_calls: tuple[StoredToolCall, ...] = ()  # an assistant message's calls
    tool_call_id: str | None = None  # the call a tool message answers
    generation: int | None = None  # the Bot generation that produced it (None: not recorded)


class ConversationChanged(Exception):
    """An append with ``after`` found the conversation's last message at another position:
    another writer stored (or deleted) messages since the caller read it. Nothing was stored,
    and a store that caches windows forgot this conversation's, so the next
    :meth:`ConversationStore.recent` reads it afresh. Not a storage failure: the caller decides
    (re-read and retry, or append without ``after``)."""

    def __init__(self, expected: int, actual: int | None) -> None:
        found = "another position" if actual is None else f"seq {actual}"
        super().__init__(
            f"the conversation changed: expected its last seq {expected}, found {found}"
        )
        self.expected = expected
        #: the conversation's last seq when the append ran (None: a concurrent writer's, unknown)
        self.actual = actual


@runtime_checkable
class ConversationStore(Protocol):
    """Append-only message storage. Errors are :class:`kubebots.runtime.errors.StorageError`s."""

    async def append(
        self, key: ConversationKey, messages: Messages, *, after: int | None = None
    ) -> int:
        """Append ``messages`` atomically (all or none) in order; return the new message count
        (the last seq).

        With ``after``, the messages take seq ``after + 1``..., and if the conversation's last
        seq is not ``after`` (0: an empty conversation) nothing is stored and
        :class:`ConversationChanged` is raised. Without it they follow whatever is stored.
        """
        ...

    async def recent(self, key: ConversationKey, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages, oldest first (``[]`` for an unknown conversation)."""
        ...

    async def history(
        self, key: ConversationKey, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        """Messages from position ``offset`` (0-based), oldest first, at most ``limit``."""
        ...

    async def exists(self, key: ConversationKey) -> bool: ...

    async def delete(self, key: ConversationKey) -> bool:
        """Delete the conversation; True if it existed."""
        ...

    async def list_conversations(self, bot_id: str, client_id: str) -> list[str]:
        """Conversation ids of one client of one bot, sorted."""
        ...

    async def delete_bot(self, bot_id: str) -> int:
        """Delete every conversation of a bot; return how many messages went."""
        ...

    async def prune(self, bot_id: str, older_than: datetime) -> int:
        """Delete the bot's messages created before ``older_than`` (timezone-aware); return how
        many went. The messages left keep their ``seq``; a conversation left empty is gone."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


@runtime_checkable
class ReportsProblems(Protocol):
    """A store that knows whether its server answers (PostgreSQL stores, the deferred one)."""

    @property
    def problem(self) -> str | None:
        """Why the server could not be reached lately; None while it answers."""
        ...


def store_problem(store: object) -> str | None:
    """The store's :attr:`ReportsProblems.problem`, None for a store without a server."""
    return store.problem if isinstance(store, ReportsProblems) else None
