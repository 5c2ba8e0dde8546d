"""The Bot Manager Guide's "Basic Usage", as written (only the import line changed).

The guide's snippets use top-level ``await``; they run here inside ``main()``. With no
OPENAI_API_KEY/OPENAI_BASE_URL set, point them at a local OpenAI-compatible server (the tests use
kubebots' own fake server) or change the provider to ``echo``.
"""

import asyncio

from kubebots.runtime import BotContext, BotManager


async def main() -> None:
    # Create manager
    manager = BotManager()
    # Create or get a bot with inline configuration
    bot = await manager.get_or_create("support-bot", config={
        "llm": {"provider": "openai", "model": "gpt-4o"},
        "conversation_storage": {"backend": "memory"},
        "system_prompt": "You are a helpful customer support assistant."
    })
    # Use the bot
    context = BotContext(
        conversation_id="conv-123",
        client_id="client-A",
        user_id="user-456"
    )
    response = await bot.chat("Hello, I need help", context)
    # Get the same bot instance (cached)
    same_bot = await manager.get_or_create("support-bot")
    assert same_bot is bot # Same instance
    print(f"response: {response}")
    await manager.clear_all()


if __name__ == "__main__":
    asyncio.run(main())
