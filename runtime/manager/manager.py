"""``BotManager``: a cache of live bots with single-flight creation, atomic reload and eviction."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .._locks import KeyedLocks
from ..bot import BotVersion, DynaBot
from ..bot_conversations import BotConversations
from ..errors import ConfigurationError
from ..factory import BotFactory
from ..ids import validate_bot_id
from ..schema import BotConfig, parse_bot_config
from ..secrets import SecretResolver
from .loaders import AsyncLoad, ConfigLoader, VersionedConfig, adapt_loader, load_config

log = logging.getLogger("kubebots.runtime.manager")


@dataclass
class ManagerStats:
    """Counters for monitoring and benchmarks."""

    builds: int = 0
    build_failures: int = 0
    reloads: int = 0
    removals: int = 0
    evictions: int = 0


class _Entry:
    __slots__ = ("bot", "last_used")

    def __init__(self, bot: DynaBot, now: float) -> None:
        self.bot = bot
        self.last_used = now


class BotManager:
    """Creates, caches, reloads and drops :class:`DynaBot` instances by bot id.

    * ``get_or_create`` builds a bot once however many callers ask at the same time; callers for
      other ids never wait on it.
    * ``reload`` builds the new bot first: on failure the old one keeps serving and the error is
      raised. Dropped bots (remove, reload, eviction) close after their in-flight chats finish.
    * ``max_bots`` keeps the most recently used bots; ``idle_ttl`` (seconds) drops idle ones.
    """

    def __init__(
        self,
        config_loader: ConfigLoader | None = None,
        *,
        max_bots: int | None = None,
        idle_ttl: float | None = None,
        factory: BotFactory | None = None,
        env: Mapping[str, str] | None = None,
        secrets: SecretResolver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bots is not None and max_bots < 1:
            raise ValueError("max_bots must be at least 1")
        if idle_ttl is not None and idle_ttl <= 0:
            raise ValueError("idle_ttl must be positive")
        self._load: AsyncLoad | None = adapt_loader(config_loader) if config_loader else None
        self._factory = factory or BotFactory(env=env, secrets=secrets)
        self._max_bots = max_bots
        self._idle_ttl = idle_ttl
        self._clock = clock
        self._bots: OrderedDict[str, _Entry] = OrderedDict()
        self._locks: KeyedLocks[str] = KeyedLocks()
        self._retiring: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.stats = ManagerStats()

    # -- the guide's API -------------------------------------------------------------------
    async def get_or_create(
        self, bot_id: str, config: BotConfig | Mapping[str, Any] | None = None
    ) -> DynaBot:
        """The cached bot for ``bot_id``, built from ``config`` or the loader if not cached."""
        entry = self._bots.get(bot_id)
        if entry is not None:
            return self._touch(bot_id, entry)
        validate_bot_id(bot_id)
        self._ensure_sweeper()
        async with self._locks.hold(bot_id):
            entry = self._bots.get(bot_id)
            if entry is not None:
                return self._touch(bot_id, entry)
            bot = await self._build(bot_id, config)
            self._insert(bot_id, bot)
            return bot

    async def get(self, bot_id: str) -> DynaBot | None:
        """The cached bot, or ``None``; never builds."""
        entry = self._bots.get(bot_id)
        return self._touch(bot_id, entry) if entry is not None else None

    async def remove(self, bot_id: str) -> bool:
        """Drop the bot (it closes once its in-flight chats finish). ``False`` if not cached."""
        async with self._locks.hold(bot_id):
            entry = self._bots.pop(bot_id, None)
            if entry is None:
                return False
            self.stats.removals += 1
            self._retire(entry.bot)
            return True

    async def reload(
        self, bot_id: str, config: BotConfig | Mapping[str, Any] | None = None
    ) -> DynaBot:
        """Rebuild the bot from ``config`` or the loader and swap it in atomically."""
        validate_bot_id(bot_id)
        async with self._locks.hold(bot_id):
            return await self._swap(bot_id, config)

    @property
    def factory(self) -> BotFactory:
        """The factory that builds this manager's bots."""
        return self._factory

    async def refresh(
        self, bot_id: str, update: VersionedConfig, *, load: bool = False
    ) -> DynaBot | None:
        """Move a loaded bot to ``update`` (a config its caller already validated, e.g. from a
        store watch) if the bot runs an older revision; the loader is not asked again.

        Returns the (possibly new) bot, or ``None`` when the bot is not loaded: it stays lazy,
        unless ``load`` (preloading), when it is built from ``update``. Waits for a build of the
        same id in progress, so a bot being created while its config changes is never left on
        the older version.
        """
        validate_bot_id(bot_id)
        async with self._locks.hold(bot_id):
            entry = self._bots.get(bot_id)
            if entry is None:
                if not load:
                    return None
                bot = await self._build(bot_id, update.config, update.version)
                self._insert(bot_id, bot)
                return bot
            current = entry.bot.version
            if current is not None and current.revision >= update.version.revision:
                return entry.bot
            return await self._swap(bot_id, update.config, update.version)

    def loaded_versions(self) -> dict[str, BotVersion | None]:
        """The version each loaded bot runs (``None`` for bots given an explicit config)."""
        return {bot_id: entry.bot.version for bot_id, entry in self._bots.items()}

    def serving_fallbacks(self) -> dict[str, str]:
        """The loaded bots a fallback LLM endpoint answered last, with its ``model@host``."""
        serving = {bot_id: entry.bot.serving_fallback for bot_id, entry in self._bots.items()}
        return {bot_id: label for bot_id, label in serving.items() if label is not None}

    def tool_counts(self) -> dict[str, Mapping[str, int]]:
        """The tools each loaded bot's toolset offers, by source label (bots without tools are
        left out)."""
        tools = {bot_id: entry.bot.tools for bot_id, entry in self._bots.items()}
        return {bot_id: t.counts() for bot_id, t in tools.items() if t is not None}

    def list_bots(self) -> list[str]:
        return list(self._bots)

    def get_bot_count(self) -> int:
        return len(self._bots)

    async def clear_all(self) -> None:
        """Drop every bot and wait until all dropped bots are closed."""
        entries = list(self._bots.values())
        self._bots.clear()
        for entry in entries:
            self._retire(entry.bot)
        await self.wait_retired()

    # -- beyond the guide -------------------------------------------------------------------
    async def evict_idle(self) -> list[str]:
        """Drop bots unused for longer than ``idle_ttl`` (the sweeper calls this)."""
        if self._idle_ttl is None:
            return []
        deadline = self._clock() - self._idle_ttl
        idle = [
            bot_id
            for bot_id, entry in self._bots.items()
            if entry.last_used < deadline and entry.bot.inflight == 0
        ]
        for bot_id in idle:
            entry = self._bots.pop(bot_id)
            self.stats.evictions += 1
            self._retire(entry.bot)
        return idle

    @asynccontextmanager
    async def conversations(self, bot_id: str) -> AsyncIterator[BotConversations]:
        """The bot's stored conversations, without building it: no LLM client is made.

        A loaded bot lends its own (counted as a use; a delete waits for a turn in progress on
        that conversation). Otherwise the store its config names is borrowed from the factory's
        shared stores until the block ends. As for :meth:`get_or_create`, a bad id raises
        ``InvalidBotIdError`` and a bot the loader does not know ``UnknownBotError``.
        """
        entry = self._bots.get(bot_id)
        if entry is not None:
            yield self._touch(bot_id, entry)
            return
        validate_bot_id(bot_id)
        config, _ = await self._config(bot_id, None)
        async with self._factory.conversations(bot_id, config) as stored:
            yield stored

    async def wait_retired(self) -> None:
        """Wait until every dropped bot has finished closing."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    async def close(self) -> None:
        """Stop the sweeper and close every bot. The manager can be used again afterwards."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.clear_all()

    async def __aenter__(self) -> BotManager:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- internals --------------------------------------------------------------------------
    async def _swap(
        self,
        bot_id: str,
        config: BotConfig | Mapping[str, Any] | None,
        version: BotVersion | None = None,
    ) -> DynaBot:
        """Build first, then swap with no await in between; the old bot drains and closes."""
        bot = await self._build(bot_id, config, version)
        old = self._bots.pop(bot_id, None)
        self._insert(bot_id, bot)
        self.stats.reloads += 1
        if old is not None:
            self._retire(old.bot)
        return bot

    async def _build(
        self,
        bot_id: str,
        config: BotConfig | Mapping[str, Any] | None,
        version: BotVersion | None = None,
    ) -> DynaBot:
        """Build from ``config`` (tagged ``version``, ``None`` for a caller's own config), else
        from the loader's answer."""
        parsed, version = await self._config(bot_id, config, version)
        try:
            bot = await self._factory.build(bot_id, parsed, version)
        except BaseException:
            self.stats.build_failures += 1
            raise
        self.stats.builds += 1
        return bot

    async def _config(
        self,
        bot_id: str,
        config: BotConfig | Mapping[str, Any] | None,
        version: BotVersion | None = None,
    ) -> tuple[BotConfig, BotVersion | None]:
        """``config`` parsed (tagged ``version``), else the loader's answer."""
        if config is not None:
            return parse_bot_config(config, bot_id=bot_id), version
        if self._load is not None:
            return await load_config(self._load, bot_id)
        raise ConfigurationError(
            f"no configuration for bot '{bot_id}': pass config= or give the manager a "
            "config_loader",
            bot_id=bot_id,
        )

    def _touch(self, bot_id: str, entry: _Entry) -> DynaBot:
        entry.last_used = self._clock()
        if self._max_bots is not None:
            self._bots.move_to_end(bot_id)
        return entry.bot

    def _insert(self, bot_id: str, bot: DynaBot) -> None:
        self._bots[bot_id] = _Entry(bot, self._clock())
        self._bots.move_to_end(bot_id)
        while self._max_bots is not None and len(self._bots) > self._max_bots:
            _, oldest = self._bots.popitem(last=False)
            self.stats.evictions += 1
            self._retire(oldest.bot)

    def _retire(self, bot: DynaBot) -> None:
        task = asyncio.ensure_future(bot.close())
        self._retiring.add(task)
        task.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("closing a dropped bot failed", exc_info=task.exception())

    def _ensure_sweeper(self) -> None:
        if self._idle_ttl is not None and (self._sweeper is None or self._sweeper.done()):
            self._sweeper = asyncio.ensure_future(self._sweep(min(self._idle_ttl / 2, 30.0)))

    async def _sweep(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.evict_idle()
