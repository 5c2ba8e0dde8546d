"""The guide's three configuration loaders, as written (only the import line changed).

Run from a directory holding ``configs/support-bot.yaml``. The async loader's ``db`` is the
guide's placeholder; here it is a few lines over psycopg against a real PostgreSQL
(``KUBEBOTS_GUIDE_DB``, default the local test database) with a ``bot_configs`` table.
"""

import asyncio
import json
import os
from contextlib import asynccontextmanager

import psycopg
import yaml

from kubebots.runtime import BotManager


class _Conn:
    def __init__(self, conn):
        self._conn = conn

    async def fetchone(self, query, *args):
        cur = await self._conn.execute(query.replace("$1", "%s"), args)
        row = await cur.fetchone()
        return None if row is None else {"config": json.loads(row[0])}


class _DB:
    @asynccontextmanager
    async def acquire(self):
        url = os.environ.get("KUBEBOTS_GUIDE_DB", "postgresql://postgres@127.0.0.1:5432/test")
        async with await psycopg.AsyncConnection.connect(url) as conn:
            yield _Conn(conn)


db = _DB()

# --- Function-based Loader (as in the guide) ---
def load_bot_config(bot_id: str) -> dict:
    """Load bot configuration from YAML files."""
    with open(f"configs/{bot_id}.yaml") as f:
        return yaml.safe_load(f)

# --- Async Function Loader (as in the guide) ---
async def load_config_from_db(bot_id: str) -> dict:
    """Load configuration from database."""
    async with db.acquire() as conn:
        row = await conn.fetchone(
            "SELECT config FROM bot_configs WHERE bot_id = $1",
            bot_id
        )
        return row["config"]

# --- Class-based Loader (as in the guide) ---
class ConfigLoader:
    """Configuration loader with caching."""
    def __init__(self, config_dir: str):
        self.config_dir = config_dir
        self._cache = {}
    def load(self, bot_id: str) -> dict:
        if bot_id not in self._cache:
            with open(f"{self.config_dir}/{bot_id}.yaml") as f:
                self._cache[bot_id] = yaml.safe_load(f)
        return self._cache[bot_id]


async def main() -> None:
    # Create manager with loader
    manager = BotManager(config_loader=load_bot_config)
    # Bot will be created using loaded config
    bot = await manager.get_or_create("support-bot")
    print(f"function loader: {bot.config.system_prompt.strip()}")

    manager = BotManager(config_loader=load_config_from_db)
    bot = await manager.get_or_create("support-bot")
    print(f"async loader: {bot.config.system_prompt.strip()}")

    loader = ConfigLoader("./configs")
    manager = BotManager(config_loader=loader)
    bot = await manager.get_or_create("support-bot")
    print(f"class loader: {bot.config.system_prompt.strip()}")


if __name__ == "__main__":
    asyncio.run(main())
