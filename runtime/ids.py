"""Validation of the identifiers that key bots and conversations.

Ids end up in URLs, file names, SQL keys and log lines, so they are bounded and free of path
separators, whitespace and control characters. Errors never echo a rejected id back in full.
"""

from __future__ import annotations

import re

from .errors import InvalidBotIdError, InvalidContextError

MAX_BOT_ID_LENGTH = 253
MAX_CONTEXT_ID_LENGTH = 256
_BOT_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:@-]*[A-Za-z0-9_])?")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\\s]")


def validate_bot_id(bot_id: object) -> str:
    """Return ``bot_id`` if it is a valid bot id, else raise :class:`InvalidBotIdError`.

    Valid: 1-253 characters of ``A-Z a-z 0-9 . _ : @ -``, starting with a letter or digit and not
    ending with ``.``, ``:``, ``@`` or ``-`` (so ``.`` and ``..`` are impossible), with at most
    one ``:`` (a Bot resource's id is ``NAMESPACE:NAME``; ``a:b:c`` can name no bot, so it is
    a malformed id, not an unknown one).
    """
    if not isinstance(bot_id, str) or not bot_id:
        raise InvalidBotIdError("bot id must be a non-empty string", detail={"field": "bot_id"})
    if len(bot_id) > MAX_BOT_ID_LENGTH:
        raise InvalidBotIdError(
            f"bot id is longer than {MAX_BOT_ID_LENGTH} characters", detail={"field": "bot_id"}
        )
    if _FORBIDDEN.search(bot_id):
        raise InvalidBotIdError(
            "bot id must not contain path separators, whitespace or control characters",
            detail={"field": "bot_id"},
        )
    if not _BOT_ID.fullmatch(bot_id):
        raise InvalidBotIdError(
            "bot id may hold only letters, digits and . _ : @ - and must start and end with a "
            "letter or digit",
            detail={"field": "bot_id"},
        )
    if bot_id.count(":") > 1:
        raise InvalidBotIdError(
            "bot id may hold at most one ':' (NAMESPACE:NAME)", detail={"field": "bot_id"}
        )
    return bot_id


def validate_context_id(value: object, field: str, *, required: bool = True) -> str | None:
    """Validate a ``client_id``/``conversation_id``/``user_id``: bounded, no control chars."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidContextError(f"{field} must be a non-empty string", detail={"field": field})
    if len(value) > MAX_CONTEXT_ID_LENGTH:
        raise InvalidContextError(
            f"{field} is longer than {MAX_CONTEXT_ID_LENGTH} characters", detail={"field": field}
        )
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise InvalidContextError(
            f"{field} must not contain control characters", detail={"field": field}
        )
    return value
