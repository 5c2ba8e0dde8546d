"""What a turn sends to the model and stores: message checks, prompt windows, conversions.

Pure functions over a bot's config (no I/O): :class:`~kubebots.runtime.bot.DynaBot` reads the
conversation's window, then asks these for the prompt and the messages to store.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping, Sequence

from .conversations.base import NewMessage, StoredMessage, StoredToolCall
from .errors import MessageRejectedError
from .llm.base import ChatMessage, Completion, ToolCall, Usage
from .schema import BotConfig

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: C0 controls and DEL, except tab, line feed and carriage return (ESC would reach terminals and
#: logs that render the stored text; none belongs in a chat message).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_text(config: BotConfig, text: str) -> None:
    """Reject control characters, unpaired surrogates and text over the bot's limit."""
    if _CONTROL.search(text) or _LONE_SURROGATE.search(text):
        raise MessageRejectedError(
            "message must not contain control characters (other than tab and line breaks) "
            "or unpaired surrogates"
        )
    limit = config.limits.max_message_chars
    if len(text) > limit:
        raise MessageRejectedError(
            f"message is {len(text)} characters; this bot accepts at most {limit}",
            detail={"max_message_chars": limit, "length": len(text)},
        )


def check_message(config: BotConfig, message: str) -> None:
    """A user's message: non-empty text that passes :func:`check_text`."""
    if not isinstance(message, str) or not message.strip():
        raise MessageRejectedError("message must be a non-empty string")
    check_text(config, message)


def _check_contents(config: BotConfig, messages: Sequence[ChatMessage]) -> None:
    for message in messages:
        if message.role == "user":
            check_message(config, message.content)
        else:  # an assistant making tool calls (or a tool) may say nothing
            check_text(config, message.content)


def added_usage(first: Usage | None, second: Usage | None) -> Usage | None:
    """The usage of two calls (either may be unreported)."""
    if first is None or second is None:
        return first or second
    return Usage(
        first.prompt_tokens + second.prompt_tokens,
        first.completion_tokens + second.completion_tokens,
    )


def to_chat(message: StoredMessage) -> ChatMessage:
    calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in message.tool_calls)
    return ChatMessage(message.role, message.content, calls, message.tool_call_id)


def to_store(message: ChatMessage) -> NewMessage:
    if message.role == "system":
        raise MessageRejectedError("a stored conversation holds no system messages")
    calls = tuple(StoredToolCall(c.id, c.name, c.arguments) for c in message.tool_calls)
    return NewMessage(message.role, message.content, calls, message.tool_call_id)


def reply_to_store(reply: Completion) -> NewMessage:
    """The assistant's reply (its tool calls included) as the store takes it."""
    calls = tuple(StoredToolCall(c.id, c.name, c.arguments) for c in reply.tool_calls)
    return NewMessage("assistant", reply.content, calls)


def _system(config: BotConfig) -> list[ChatMessage]:
    return [ChatMessage("system", config.system_prompt)] if config.system_prompt else []


def stateless_prompt(config: BotConfig, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The system prompt, then the last message and the ``memory.maxMessages`` before it.

    The last message is the user's or a tool result. The window never splits an assistant
    message's tool calls from their ``tool`` answers: a window that would start at a ``tool``
    message starts at the assistant message that made the calls instead (a few messages more),
    so the answered calls always reach the model with their results.
    """
    if not messages or messages[-1].role not in ("user", "tool"):
        raise MessageRejectedError("the last message must come from the user or a tool")
    _check_contents(config, messages)
    start = max(0, len(messages) - 1 - config.memory.max_messages)
    while start > 0 and messages[start].role == "tool":
        start -= 1
    return [*_system(config), *messages[start:]]


def checked_new(config: BotConfig, messages: Sequence[ChatMessage]) -> list[NewMessage]:
    """A stored turn's new ``messages`` (one user message, or tool answers), checked, as the
    store takes them."""
    roles = {m.role for m in messages}
    if not (len(messages) == 1 and roles == {"user"}) and roles != {"tool"}:
        raise MessageRejectedError(
            "a stored turn takes one user message, or the tool messages answering the "
            "conversation's last tool calls"
        )
    for message in messages:
        if message.tool_calls or (message.role == "tool") != bool(message.tool_call_id):
            raise MessageRejectedError("a tool message, and only it, names a tool_call_id")
        _check_contents(config, [message])
        check_text(config, message.tool_call_id or "")
    return [to_store(m) for m in messages]


def open_calls(recent: Sequence[StoredMessage]) -> tuple[ToolCall, ...]:
    """The calls of the conversation's last assistant message that no ``tool`` message after it
    answers (``recent`` ends the conversation and reaches back to that assistant message)."""
    answered: set[str | None] = set()
    for message in reversed(recent):
        if message.role != "tool":
            if message.role != "assistant":
                return ()
            return tuple(c for c in to_chat(message).tool_calls if c.id not in answered)
        answered.add(message.tool_call_id)
    return ()


def group_start(recent: Sequence[StoredMessage]) -> int:
    """The index in ``recent`` of the last assistant message when only ``tool`` messages follow
    it (the conversation's last call group), else ``len(recent)``."""
    index = len(recent)
    while index > 0 and recent[index - 1].role == "tool":
        index -= 1
    if index > 0 and recent[index - 1].role == "assistant" and recent[index - 1].tool_calls:
        return index - 1
    return len(recent)


def check_answers(pending: Sequence[ToolCall], messages: Sequence[ChatMessage]) -> None:
    """Tool messages must answer each ``pending`` call (the conversation's open calls,
    :func:`open_calls`) once, and a user message may not come while calls wait for answers."""
    ids = [c.id for c in pending]
    answered = [m.tool_call_id or "" for m in messages if m.role == "tool"]
    if not answered:
        if ids:
            raise MessageRejectedError(
                f"the conversation awaits the results of tool calls {ids}: send them as "
                "tool messages first",
                detail={"pending_tool_call_ids": ids},
            )
        return
    if sorted(answered) != sorted(ids):
        raise MessageRejectedError(
            f"tool messages answer {answered}, but the conversation's last tool calls are "
            f"{ids}: answer each of them once",
            detail={"pending_tool_call_ids": ids},
        )


def check_not_awaiting_approval(pending: Sequence[ToolCall], server_tools: Container[str]) -> None:
    """New messages may not come while calls of the bot's own tools (``server_tools``) wait for
    the client's approval: those are decided first (``DynaBot.resume``), never answered by the
    client or dropped."""
    waiting = [c.id for c in pending if c.name in server_tools]
    if waiting:
        raise MessageRejectedError(
            f"tool calls {waiting} wait for approval: approve or reject each of them first",
            detail={"pending_tool_call_ids": waiting},
        )


def check_decisions(pending: Sequence[ToolCall], approvals: Mapping[str, bool]) -> None:
    """``approvals`` must decide each ``pending`` call (by id, a bool) and name no other."""
    ids = [c.id for c in pending]
    if not ids:
        raise MessageRejectedError("no tool calls of this conversation wait for approval")
    decided = list(approvals)
    if sorted(decided) != sorted(ids) or not all(isinstance(v, bool) for v in approvals.values()):
        raise MessageRejectedError(
            f"approvals decide {sorted(decided)}, but the tool calls waiting are {ids}: "
            "approve (true) or reject (false) each of them",
            detail={"pending_tool_call_ids": ids},
        )


def check_room(config: BotConfig, recent: Sequence[StoredMessage], adding: int) -> None:
    """``limits.maxHistoryMessages`` must leave room for ``adding`` messages and a reply."""
    held = recent[-1].seq if recent else 0
    cap = config.limits.max_history_messages
    if held + adding + 1 > cap:
        raise MessageRejectedError(
            f"conversation holds {held} messages; this bot keeps at most {cap}",
            detail={"max_history_messages": cap},
        )


def stored_window(
    config: BotConfig, recent: Sequence[StoredMessage], *, answering: bool = False
) -> list[ChatMessage]:
    """The system prompt and the memory window of a conversation whose last messages are
    ``recent`` (at least the memory window, and back to the last call group's assistant
    message).

    The window (``memory.maxMessages``, tool messages counted like the others) starts at a user
    message, so it never starts with a ``tool`` message or an assistant message whose calls it
    does not answer. ``answering``: the turn answers the conversation's open calls, so the
    window holds their call group (the assistant message and the answers stored so far) even if
    ``maxMessages`` is too short for it.
    """
    window = config.memory.max_messages
    start = max(0, len(recent) - window) if window else len(recent)
    while start < len(recent) and recent[start].role != "user":
        start += 1  # a window starts at a user turn
    if answering:
        start = min(start, group_start(recent))
    return [*_system(config), *(to_chat(m) for m in recent[start:])]


def stored_prompt(
    config: BotConfig, recent: Sequence[StoredMessage], messages: Sequence[ChatMessage]
) -> list[ChatMessage]:
    """The prompt of a turn adding ``messages`` to a conversation whose last messages are
    ``recent`` (as :func:`stored_window` takes them).

    The new messages are checked against the conversation (:func:`check_answers`, and
    ``limits.maxHistoryMessages``); the prompt is :func:`stored_window`, then them.
    """
    check_answers(open_calls(recent), messages)
    check_room(config, recent, len(messages))
    answering = bool(messages) and messages[0].role == "tool"
    return [*stored_window(config, recent, answering=answering), *messages]
