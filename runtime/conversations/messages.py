"""What a conversation store accepts, and how stored rows become messages again.

Every store validates its arguments the same way, so switching backends never changes which
inputs are accepted: a role must be ``user``/``assistant``/``tool``, text must be storable (see
:func:`~kubebots.runtime.persistence.checks.check_text`), counts are not negative. Only an
assistant message carries ``tool_calls``, and only (and always) a tool message a
``tool_call_id``. SQL stores keep an assistant's calls as JSON text (:func:`calls_json`). A
message's ``generation`` is None or a non-negative 64-bit integer (a Kubernetes generation).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Final

from ..errors import StorageError
from ..persistence.checks import check_count, check_text
from ..persistence.times import to_utc
from .base import ConversationKey, MessageRole, Messages, NewMessage, StoredMessage, StoredToolCall

#: The table every SQL store uses unless told otherwise.
DEFAULT_TABLE: Final = "kubebots_messages"

_ROLES: Final[frozenset[str]] = frozenset({"user", "assistant", "tool"})
#: The largest generation a store keeps (a signed 64-bit column, as Kubernetes' int64).
MAX_GENERATION: Final = 2**63 - 1


def check_key(key: ConversationKey) -> ConversationKey:
    """``key`` as a :class:`ConversationKey` whose three parts are storable text."""
    bot_id, client_id, conversation_id = key
    return ConversationKey(
        check_text("bot_id", bot_id),
        check_text("client_id", client_id),
        check_text("conversation_id", conversation_id),
    )


def check_aware(at: datetime) -> datetime:
    """``at`` in UTC; a naive datetime (no time zone) is a :class:`ValueError`."""
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError("older_than must be a timezone-aware datetime")
    return at.astimezone(UTC)


def check_messages(messages: Messages) -> list[NewMessage]:
    """``messages`` as :class:`NewMessage` objects, every role known, every text storable, tool
    calls only on assistant messages and a ``tool_call_id`` on (only) tool messages."""
    return [check_message(m) for m in messages]


def check_message(message: NewMessage | tuple[MessageRole, str]) -> NewMessage:
    """One message to append, checked (a ``(role, content)`` pair is a text message)."""
    if isinstance(message, NewMessage):
        role, content = message.role, message.content
        calls, call_id = message.tool_calls, message.tool_call_id
        generation = message.generation
    else:
        (role, content), calls, call_id, generation = message, (), None, None
    role = to_role(role, error=ValueError)
    if calls and role != "assistant":
        raise ValueError("only assistant messages carry tool_calls")
    if (call_id is None) != (role != "tool"):
        raise ValueError("a tool message, and only a tool message, has a tool_call_id")
    checked = tuple(
        StoredToolCall(
            check_text("tool call id", call.id),
            check_text("tool call name", call.name),
            check_text("tool call arguments", call.arguments),
        )
        for call in calls
    )
    return NewMessage(
        role,
        check_text("content", content),
        checked,
        None if call_id is None else check_text("tool_call_id", call_id),
        check_generation(generation),
    )


def check_generation(generation: int | None) -> int | None:
    """``generation`` if it is None or an int a store can keep (see :data:`MAX_GENERATION`)."""
    if generation is not None and check_count("generation", generation) > MAX_GENERATION:
        raise ValueError(f"generation must be at most {MAX_GENERATION}")
    return generation


def stored_message(message: NewMessage, seq: int, created_at: datetime) -> StoredMessage:
    """A checked ``message`` as stored at position ``seq`` (what a store returns of it)."""
    return StoredMessage(
        seq,
        message.role,
        message.content,
        created_at,
        message.tool_calls,
        message.tool_call_id,
        message.generation,
    )


def calls_json(calls: tuple[StoredToolCall, ...]) -> str | None:
    """An assistant's tool calls as the SQL stores keep them: JSON text, NULL for none."""
    if not calls:
        return None
    return json.dumps([{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls])


def to_calls(text: str | None) -> tuple[StoredToolCall, ...]:
    """Stored :func:`calls_json` text as tool calls; anything else is a :class:`StorageError`."""
    if text is None:
        return ()
    try:
        return tuple(
            StoredToolCall(str(c["id"]), str(c["name"]), str(c["arguments"]))
            for c in json.loads(text)
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise StorageError(f"stored tool calls are not valid ({type(exc).__name__})") from None


def to_role(value: object, *, error: type[Exception] = StorageError) -> MessageRole:
    """``value`` as a :data:`MessageRole`; a stored unknown role is a :class:`StorageError`."""
    if value == "user":
        return "user"
    if value == "assistant":
        return "assistant"
    if value == "tool":
        return "tool"
    raise error(f"unknown message role (expected one of {sorted(_ROLES)})")


def to_message(
    seq: int,
    role: object,
    content: str,
    created_at: datetime,
    *,
    tool_calls: str | None = None,
    tool_call_id: str | None = None,
    generation: int | None = None,
) -> StoredMessage:
    """A fetched row as a :class:`StoredMessage` (``tool_calls`` as :func:`calls_json` text;
    ``generation`` NULL in rows stored before it was recorded)."""
    return StoredMessage(
        seq=int(seq),
        role=to_role(role),
        content=content,
        created_at=to_utc(created_at),
        tool_calls=to_calls(tool_calls),
        tool_call_id=tool_call_id,
        generation=None if generation is None else int(generation),
    )
