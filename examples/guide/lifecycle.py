"""The guide's "Bot Lifecycle", as written (only the import line changed).

Needs a loader for ``reload``; run from a directory holding ``configs/support-bot.yaml``.
"""

import asyncio

import yaml

from kubebots.runtime import BotManager


def load_bot_config(bot_id: str) -> dict:
    with open(f"configs/{bot_id}.yaml") as f:
        return yaml.safe_load(f)


async def main() -> None:
    manager = BotManager(config_loader=load_bot_config)
    await manager.get_or_create("support-bot")

    # List active bots
    active_bots = manager.list_bots()
    print(f"Active bots: {active_bots}")
    # Get bot count
    count = manager.get_bot_count()
    print(f"Total bots: {count}")
    # Get bot without creating
    bot = await manager.get("support-bot")
    if bot is None:
        print("Bot not yet created")
    # Remove a bot
    removed = await manager.remove("support-bot")
    print(f"Bot removed: {removed}")
    # Reload bot with fresh config (requires config_loader)
    bot = await manager.reload("support-bot")
    print(f"Reloaded: {bot.bot_id} -> {manager.list_bots()}")
    # Clear all bots
    await manager.clear_all()
    print(f"After clear_all: {manager.get_bot_count()}")


if __name__ == "__main__":
    asyncio.run(main())
