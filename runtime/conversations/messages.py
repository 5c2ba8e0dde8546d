"""What a conversation store accepts, and how stored rows become messages again.

Every store validates its arguments the same way, so switching backends never changes which
inputs are accepted: a role must be ``user``/``assistant``, text must be storable (see
:func:`~kubebots.runtime.persistence.checks.check_text`), counts are not negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from ..errors import StorageError
from ..persistence.checks import check_text
from ..persistence.times import to_utc
from .base import ConversationKey, MessageRole, StoredMessage

#: The table every SQL store uses unless told otherwise.
DEFAULT_TABLE: Final = "kubebots_messages"

_ROLES: Final[frozenset[str]] = frozenset({"user", "assistant"})


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


def check_messages(messages: Sequence[tuple[MessageRole, str]]) -> list[tuple[MessageRole, str]]:
    """``messages`` as a list, every role known and every content storable text."""
    checked: list[tuple[MessageRole, str]] = []
    for role, content in messages:
        checked.append((to_role(role, error=ValueError), check_text("content", content)))
    return checked


def to_role(value: object, *, error: type[Exception] = StorageError) -> MessageRole:
    """``value`` as a :data:`MessageRole`; a stored unknown role is a :class:`StorageError`."""
    if value == "user":
        return "user"
    if value == "assistant":
        return "assistant"
    raise error(f"unknown message role (expected one of {sorted(_ROLES)})")


def to_message(seq: int, role: object, content: str, created_at: datetime) -> StoredMessage:
    """A fetched row as a :class:`StoredMessage`."""
    return StoredMessage(
        seq=int(seq), role=to_role(role), content=content, created_at=to_utc(created_at)
    )
