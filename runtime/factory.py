"""Building :class:`DynaBot`s from configs, sharing physical stores between bots.

A rollout's candidate entry (``NAMESPACE:NAME@candidate``) is built as the Bot it belongs to
(:func:`~kubebots.runtime.configstore.rollout.stable_id`): the candidate reads and writes the
same conversations as the stable bot, resolves its secrets in the Bot's namespace and counts
under the Bot's id; what tells the two apart is the generation their messages are tagged with.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from . import tracing
from ._locks import KeyedLocks
from .bot import BotVersion, DynaBot
from .bot_conversations import StoredConversations
from .configstore.rollout import is_candidate, stable_id
from .conversations import (
    ConversationStore,
    StorageConfig,
    open_conversation_store,
    storage_key,
    store_problem,
)
from .errors import BotCreationError, ConfigurationError, KubebotsError
from .llm import LLMProvider, build_provider
from .llm.fallback import Endpoint, FallbackProvider
from .llm.stats import LLMRequestStats, endpoint_label
from .schema import (
    BotConfig,
    LLMConfig,
    MemoryStorageConfig,
    SqliteStorageConfig,
    parse_bot_config,
)
from .secrets import SecretResolver, resolve_api_key
from .tools import FunctionSource, FunctionTool, ToolSource, ToolStats
from .tools.build import FactoryTools
from .tools.egress import EgressPolicy


class _SharedStores:
    """Reference-counted conversation stores: bots with the same storage config share one
    (one SQLite connection / one PostgreSQL pool), and a reload keeps conversations alive.

    A relative SQLite ``path`` lives under ``data_dir`` (a server's ``--data-dir``), so two
    servers with different data directories never share a file; without one it is relative to
    the working directory, as a library user expects."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self._stores: dict[str, tuple[ConversationStore, int]] = {}
        self._opening: KeyedLocks[str] = KeyedLocks()
        self._data_dir = data_dir

    def _located(self, config: BotConfig) -> StorageConfig:
        cfg = config.conversation_storage
        if not isinstance(cfg, SqliteStorageConfig) or self._data_dir is None:
            return cfg
        if Path(cfg.path).is_absolute():
            return cfg
        return cfg.model_copy(update={"path": str(self._data_dir / cfg.path)})

    async def acquire(
        self, bot_id: str, config: BotConfig, env: Mapping[str, str]
    ) -> tuple[str, ConversationStore]:
        cfg = self._located(config)
        # Memory stores are per bot: removing a bot drops its conversations with it.
        key = f"memory:{bot_id}" if isinstance(cfg, MemoryStorageConfig) else storage_key(cfg)
        async with self._opening.hold(key):
            held = self._stores.get(key)
            if held is None:
                store = await open_conversation_store(cfg, env=env, defer=True)
                self._stores[key] = (store, 1)
                return key, store
            self._stores[key] = (held[0], held[1] + 1)
            return key, held[0]

    async def release(self, key: str) -> None:
        store, refs = self._stores[key]
        if refs > 1:
            self._stores[key] = (store, refs - 1)
            return
        del self._stores[key]
        await store.close()

    def __len__(self) -> int:
        return len(self._stores)

    def problems(self) -> list[str]:
        """Why open conversation stores cannot reach their database (empty: all answer)."""
        found = (store_problem(store) for store, _ in self._stores.values())
        return sorted({problem for problem in found if problem})


def with_process_defaults(llm: LLMConfig, env: Mapping[str, str]) -> LLMConfig:
    """Apply ``OPENAI_BASE_URL`` to an openai bot that names no ``baseUrl`` (like the SDK does).

    (``OPENAI_API_KEY`` likewise stands in for a bot naming no key source: see ``secrets``.)
    """
    if llm.provider == "openai" and llm.base_url is None and env.get("OPENAI_BASE_URL"):
        return llm.model_copy(update={"base_url": env["OPENAI_BASE_URL"]})
    return llm


ProviderFactory = Callable[[LLMConfig, str | None], LLMProvider]

#: An endpoint's config (the bot's ``llm``, or one of its fallbacks as a config) and its key.
_Keyed = tuple[LLMConfig, str | None]


def _at_fallback(exc: ConfigurationError, index: int) -> ConfigurationError:
    """``exc`` (about ``llm...``) as an error about ``llm.fallbacks.<index>...``."""
    where = f"llm.fallbacks.{index}"
    errors = [(where + field.removeprefix("llm"), reason) for field, reason in exc.errors]
    return ConfigurationError(f"{exc.message} ({where})", errors=errors, bot_id=exc.bot_id)


def _default_provider(config: LLMConfig, api_key: str | None) -> LLMProvider:
    return build_provider(config, api_key=api_key)


class BotFactory:
    """Turns ``(bot_id, BotConfig)`` into a ready :class:`DynaBot`.

    ``env`` is where ``apiKeyEnv``/``urlEnv`` names are looked up (``os.environ`` when not
    given, read at build time, never at import); ``secrets`` resolves ``apiKeySecretRef``;
    ``providers`` builds the LLM provider of one endpoint (inject your own implementation to
    test or extend); an ``openai`` bot's endpoints (its own and its ``llm.fallbacks``) are
    wrapped in a :class:`~.llm.fallback.FallbackProvider` counting calls in ``llm_stats``;
    ``data_dir`` is where relative SQLite conversation paths live (default: the working
    directory). A bot's ``tools`` may reach the hosts ``egress`` allows (default: the cluster's
    own domains); tool calls are counted in ``tool_stats``; ``tools`` adds tool sources per bot
    id (e.g. Python functions; closed with each bot built from them, so reusable after close).
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        secrets: SecretResolver | None = None,
        providers: ProviderFactory | None = None,
        data_dir: Path | None = None,
        llm_stats: LLMRequestStats | None = None,
        egress: EgressPolicy | None = None,
        tool_stats: ToolStats | None = None,
        tools: Mapping[str, Sequence[ToolSource]] | None = None,
    ) -> None:
        self._env = env
        self._secrets = secrets
        self._providers = providers or _default_provider
        self._stores = _SharedStores(data_dir)
        #: LLM calls per bot, endpoint and outcome, of every bot this factory built.
        self.llm_stats = llm_stats or LLMRequestStats()
        self._tools = FactoryTools(egress, tool_stats, tools)
        #: tool calls per bot, tool and outcome, of every bot this factory built.
        self.tool_stats = self._tools.stats
        #: the HTTP client and MCP sessions the bots' tools share
        self.tool_clients = self._tools.clients

    @property
    def open_stores(self) -> int:
        return len(self._stores)

    def conversation_problems(self) -> list[str]:
        """Why the conversation databases in use cannot be reached (empty: all answer)."""
        return self._stores.problems()

    async def build(
        self, bot_id: str, config: BotConfig, version: BotVersion | None = None
    ) -> DynaBot:
        """The bot ``bot_id`` of ``config`` (``version``: where it came from), in a span.

        A candidate entry's id builds a bot whose own id is the Bot's (:func:`stable_id`): its
        conversation keys, logs, secrets, tools and metrics are the Bot's."""
        own_id = stable_id(bot_id)
        attributes: dict[str, str | int | bool] = {
            "kubebots.bot.id": own_id,
            "gen_ai.system": config.llm.provider,
            "gen_ai.request.model": config.llm.model,
        }
        if is_candidate(bot_id):
            attributes["kubebots.bot.candidate"] = True
        if version is not None:
            attributes["kubebots.bot.revision"] = version.revision
            attributes["kubebots.bot.generation"] = version.generation
        with tracing.span("kubebots.bot.build", attributes):
            return await self._build(own_id, config, version)

    async def _build(self, bot_id: str, config: BotConfig, version: BotVersion | None) -> DynaBot:
        """Build the bot whose own id is ``bot_id`` (never a candidate entry's id)."""
        env = self._environment()
        llm_config = with_process_defaults(config.llm, env)
        api_key = await resolve_api_key(llm_config, bot_id=bot_id, env=env, secrets=self._secrets)
        fallbacks = await self._fallback_endpoints(bot_id, llm_config, env)
        key, store = await self._acquire_store(bot_id, config, env)
        llm: LLMProvider | None = None
        try:
            llm = await self._endpoint_provider(bot_id, (llm_config, api_key), fallbacks)
            tools = await self._tools.open(bot_id, config.tools, env=env, secrets=self._secrets)
        except BaseException:
            try:
                if llm is not None:
                    await llm.close()
            finally:
                await self._stores.release(key)
            raise

        async def release() -> None:
            await self._stores.release(key)

        return DynaBot(
            bot_id, config, llm=llm, storage=store, release=release, version=version, tools=tools
        )

    @asynccontextmanager
    async def conversations(
        self, bot_id: str, config: BotConfig
    ) -> AsyncIterator[StoredConversations]:
        """The conversations of ``bot_id`` in the store ``config`` names, without building the
        bot: no LLM client, no API key. The store is shared with the bots using it (opened if
        none does) and released when the block ends. A candidate entry's are its Bot's."""
        own_id = stable_id(bot_id)
        key, store = await self._acquire_store(own_id, config, self._environment())
        try:
            yield StoredConversations(own_id, store)
        finally:
            await self._stores.release(key)

    async def _fallback_endpoints(
        self, bot_id: str, llm: LLMConfig, env: Mapping[str, str]
    ) -> list[_Keyed]:
        """Each of ``llm.fallbacks`` as a config, with its key resolved like the bot's."""
        resolved: list[_Keyed] = []
        for index, fallback in enumerate(llm.fallbacks):
            config = with_process_defaults(fallback.llm_config(llm), env)
            try:
                key = await resolve_api_key(config, bot_id=bot_id, env=env, secrets=self._secrets)
            except ConfigurationError as exc:
                raise _at_fallback(exc, index) from None
            resolved.append((config, key))
        return resolved

    async def _endpoint_provider(
        self, bot_id: str, primary: _Keyed, fallbacks: list[_Keyed]
    ) -> LLMProvider:
        """The bot's provider: an ``openai`` bot's endpoints behind a ``FallbackProvider``."""
        config, api_key = primary
        llm = self._providers(config, api_key)
        if config.provider != "openai":
            return llm
        endpoints = [Endpoint(endpoint_label(config.model, config.base_url), llm)]
        try:
            for fallback, key in fallbacks:
                label = endpoint_label(fallback.model, fallback.base_url)
                endpoints.append(Endpoint(label, self._providers(fallback, key)))
        except BaseException:
            for endpoint in endpoints:
                await endpoint.provider.close()
            raise
        return FallbackProvider(
            endpoints, bot_id=bot_id, stats=self.llm_stats, cooldown=config.cooldown_seconds
        )

    def _environment(self) -> Mapping[str, str]:
        return self._env if self._env is not None else os.environ

    async def _acquire_store(
        self, bot_id: str, config: BotConfig, env: Mapping[str, str]
    ) -> tuple[str, ConversationStore]:
        try:
            return await self._stores.acquire(bot_id, config, env)
        except KubebotsError:
            raise
        except (OSError, RuntimeError) as exc:
            raise BotCreationError(bot_id, f"storage failed ({type(exc).__name__})") from None


async def create_bot(
    config: BotConfig | Mapping[str, Any],
    *,
    bot_id: str = "bot",
    env: Mapping[str, str] | None = None,
    secrets: SecretResolver | None = None,
    tools: Sequence[FunctionTool] = (),
    egress: EgressPolicy | None = None,
) -> DynaBot:
    """A standalone bot that owns its provider, storage and tool clients (released by
    ``await bot.close()``); ``tools``: Python functions its model may call, besides its config's
    ``tools``."""
    extra = {bot_id: [FunctionSource(tools)]} if tools else None
    factory = BotFactory(env=env, secrets=secrets, egress=egress, tools=extra)
    return await factory.build(bot_id, parse_bot_config(config, bot_id=bot_id))
