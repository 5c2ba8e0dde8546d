"""One router per resource: chat, bots, conversations, the OpenAI-compatible API, health."""
