"""The ``/v1`` request's messages as the bot takes them (:class:`ChatMessage`), or a 400."""

from __future__ import annotations

from ...llm.base import ChatMessage, ToolCall
from .openai_request import CompletionRequest, InMessage, invalid


def _text(message: InMessage, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for number, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise invalid(
                f"messages.[{index}].content.[{number}].type",
                f"content parts of type '{part.type}' are not supported (only 'text' is)",
            )
        parts.append(part.text)
    return "".join(parts)


def to_chat(message: InMessage, index: int) -> ChatMessage:
    """``message`` as a :class:`ChatMessage` (``developer`` is ``system``), or a 400."""
    where = f"messages.[{index}]"
    if message.tool_calls and message.role != "assistant":
        raise invalid(f"{where}.tool_calls", "only assistant messages may carry tool_calls")
    if message.content is None and not (message.role == "assistant" and message.tool_calls):
        raise invalid(f"{where}.content", f"a {message.role} message needs content")
    text = _text(message, index)
    if message.role == "tool":
        if message.tool_call_id is None:
            raise invalid(f"{where}.tool_call_id", "a tool message needs tool_call_id")
        return ChatMessage("tool", text, tool_call_id=message.tool_call_id)
    if message.role == "assistant":
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()
        )
        return ChatMessage("assistant", text, tool_calls=calls)
    return ChatMessage("user" if message.role == "user" else "system", text)


def new_messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    """What a stored-conversation request adds: its last (user) message, or the tool messages
    it ends with."""
    if messages[-1].role != "tool":
        return messages[-1:]
    start = len(messages) - 1
    while start > 0 and messages[start - 1].role == "tool":
        start -= 1
    return messages[start:]


def to_messages(body: CompletionRequest) -> list[ChatMessage]:
    messages = [to_chat(message, i) for i, message in enumerate(body.messages)]
    if messages[-1].role not in ("user", "tool"):
        raise invalid("messages", "the last message must be a user or a tool message")
    return messages
