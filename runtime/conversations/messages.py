"""Helpers the stores share: argument checks, row conversion and PostgreSQL URL hygiene.

Every store validates its arguments the same way, so switching backends never changes which
inputs are accepted: a role must be ``user``/``assistant``, text must be encodable as UTF-8
and free of NUL characters (PostgreSQL cannot store them), windows are non-negative.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from urllib.parse import unquote

from ..errors import StorageError
from .base import ConversationKey, MessageRole, StoredMessage

#: The table every SQL store uses unless told otherwise.
DEFAULT_TABLE: Final = "kubebots_messages"

_ROLES: Final[frozenset[str]] = frozenset({"user", "assistant"})
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")
_KEYWORD_SECRET = re.compile(r"\b(?:user|password)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&#]+)")


def check_table(name: str) -> str:
    """``name`` if it is a plain lowercase SQL identifier (so it never needs quoting rules)."""
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError("table must match [a-z_][a-z0-9_]* and be at most 63 characters")
    return name


def check_text(what: str, value: object) -> str:
    """``value`` if it is a str that every backend can store (no NUL, valid Unicode)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text (no lone surrogates)") from None
    return value


def check_key(key: ConversationKey) -> ConversationKey:
    """``key`` as a :class:`ConversationKey` whose three parts are storable text."""
    bot_id, client_id, conversation_id = key
    return ConversationKey(
        check_text("bot_id", bot_id),
        check_text("client_id", client_id),
        check_text("conversation_id", conversation_id),
    )


def check_messages(messages: Sequence[tuple[MessageRole, str]]) -> list[tuple[MessageRole, str]]:
    """``messages`` as a list, every role known and every content storable text."""
    checked: list[tuple[MessageRole, str]] = []
    for role, content in messages:
        checked.append((to_role(role, error=ValueError), check_text("content", content)))
    return checked


def check_count(what: str, value: int | None) -> None:
    """Reject a negative (or non-integer) offset or limit."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if value < 0:
        raise ValueError(f"{what} must not be negative")


def to_role(value: object, *, error: type[Exception] = StorageError) -> MessageRole:
    """``value`` as a :data:`MessageRole`; a stored unknown role is a :class:`StorageError`."""
    if value == "user":
        return "user"
    if value == "assistant":
        return "assistant"
    raise error(f"unknown message role (expected one of {sorted(_ROLES)})")


def to_utc(value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_message(seq: int, role: object, content: str, created_at: datetime) -> StoredMessage:
    """A fetched row as a :class:`StoredMessage`."""
    return StoredMessage(
        seq=int(seq), role=to_role(role), content=content, created_at=to_utc(created_at)
    )


def url_secrets(dsn: str) -> list[str]:
    """User names and passwords in a PostgreSQL URL or ``key=value`` DSN, longest first.

    Both the raw and the percent-decoded spelling are returned, so :func:`redact` catches either.
    """
    found: list[str] = []
    authority = _AUTHORITY.match(dsn)
    if authority:
        user, _, password = authority.group(2).partition(":")
        found += [user, password]
    found += [m.group(1).strip("'") for m in _KEYWORD_SECRET.finditer(dsn)]
    expanded = {s for s in found if s} | {unquote(s) for s in found if s}
    return sorted(expanded, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def url_without_password(url: str) -> str:
    """``url`` without the password in its user info or its query string."""
    authority = _AUTHORITY.match(url)
    if authority:
        user = authority.group(2).partition(":")[0]
        userinfo = f"{user}@" if user else ""
        url = f"{authority.group(1)}{userinfo}{url[authority.end() :]}"
    base, sep, query = url.partition("?")
    kept = [p for p in query.split("&") if not p.lower().startswith("password=")]
    return base + (sep + "&".join(kept) if any(kept) else "")
