from __future__ import annotations

import pytest

from kubebots.runtime import BotContext, InvalidBotIdError
from kubebots.runtime.ids import validate_bot_id


@pytest.mark.parametrize("good", ["support", "a", "team-1.support", "ns:bot", "Bot_2", "x" * 253])
def test_valid_bot_ids(good: str) -> None:
    assert validate_bot_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x" * 254,
        "a/b",
        "..",
        ".",
        "a\\b",
        "a b",
        "a\nb",
        "a\x00",
        "-lead",
        "trail-",
        "a:b:c",
        "ns::b",
        None,
        5,
    ],
)
def test_invalid_bot_ids(bad: object) -> None:
    with pytest.raises(InvalidBotIdError):
        validate_bot_id(bad)
    with pytest.raises(ValueError):  # ValueError-compatible
        validate_bot_id(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"conversation_id": "", "client_id": "c"},
        {"conversation_id": "c", "client_id": ""},
        {"conversation_id": "c" * 300, "client_id": "c"},
        {"conversation_id": "c", "client_id": "a\x07"},
        {"conversation_id": "c", "client_id": "a", "user_id": ""},
    ],
)
def test_bad_context(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        BotContext(**kwargs)


def test_context_accepts_guide_usage() -> None:
    ctx = BotContext(conversation_id="conv-123", client_id="client-A", user_id="user-456")
    assert ctx.client_id == "client-A"
