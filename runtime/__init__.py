"""kubebots runtime: BotManager, BotContext and DynaBot."""
