"""``create_app(settings)``: the runtime's chat API, its BotManager built in the lifespan.

The lifespan opens the config store (PostgreSQL: on first use), builds a store-driven
:class:`BotManager`, starts the :class:`StoreSync` (``/readyz`` turns ready after its first full
sync) and the rate limiter, and closes all of it on shutdown. Parts can be injected (tests,
embedding) and are then not closed by the app.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from ...auth import KeyRing
from ...configstore import ReportingConfigStore, open_config_store
from ...factory import BotFactory, ProviderFactory
from ...kube_config import ClusterAccess
from ...kube_secrets import KubernetesSecretResolver
from ...manager import BotManager
from ...ratelimit import (
    DeferredRateLimiter,
    MemoryRateLimiter,
    PostgresRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from ...routing import RolloutCounters, RolloutTable
from ...secrets import DirectorySecretResolver, SecretResolver
from ...sync import LastGoodConfigs, StoreConfigLoader, StoreSync, SyncSettings
from ..exception_handlers import register_exception_handlers
from .failed_auth import FailedAuthentications
from .metrics import Metrics
from .middleware import RequestContextMiddleware
from .openai_errors import register_openai_error_handlers
from .quota import Quota
from .rollout_shadow import ShadowMirrors
from .routers import bots, chat, conversations, health, models, openai
from .routers.ui import ui_router
from .settings import RuntimeSettings
from .state import RuntimeState

log = logging.getLogger("kubebots.runtime.api")

#: Response headers a browser client may read (CORS).
CORS_EXPOSED_HEADERS = [
    "retry-after",
    "x-request-id",
    "x-kubebots-usage",
    "x-kubebots-generation",
    *(
        f"x-ratelimit-{what}-{scope}"
        for what in ("limit", "remaining", "reset")
        for scope in ("requests", "tokens")
    ),
]


def load_keyring(settings: RuntimeSettings) -> KeyRing | None:
    """The API keys, or ``None`` when authentication is (explicitly) off."""
    if not settings.auth:
        log.warning("authentication is OFF: every caller may use every bot (KUBEBOTS_AUTH=false)")
        return None
    return KeyRing.load(
        settings.api_keys_file,
        json_text=settings.api_keys.get_secret_value() if settings.api_keys else None,
        admin_key=settings.admin_key.get_secret_value() if settings.admin_key else None,
    )


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, app, settings) out of the collector's sight
    and collect young objects less often: full collections then scan only what requests
    create, which cuts tail latency (p99) under load."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(10_000, second, third)


def secret_resolver(
    settings: RuntimeSettings, env: Mapping[str, str] | None = None
) -> SecretResolver | None:
    """``env``: the process environment (default), where a pod finds the API's address."""
    if settings.secrets == "kubernetes":
        access = ClusterAccess(os.environ if env is None else env, settings.service_account_dir)
        return KubernetesSecretResolver(access=access)
    if settings.secrets == "directory" or settings.secrets_dir is not None:
        return DirectorySecretResolver(settings.secrets_dir or Path("/etc/kubebots/secrets"))
    return None


def _limiter(settings: RuntimeSettings) -> RateLimiter:
    """Shared limiters connect on first use (their server may not be up yet)."""
    backend = settings.effective_rate_limit_backend()
    if backend == "redis":
        return DeferredRateLimiter(
            partial(
                RedisRateLimiter.open, settings.effective_redis_url(), prefix=settings.table_prefix
            )
        )
    if backend == "postgres":
        return DeferredRateLimiter(
            partial(PostgresRateLimiter.open, settings.store_url(), prefix=settings.table_prefix)
        )
    return MemoryRateLimiter()


def create_app(
    settings: RuntimeSettings | None = None,
    *,
    env: Mapping[str, str] | None = None,
    store: ReportingConfigStore | None = None,
    limiter: RateLimiter | None = None,
    keyring: KeyRing | None = None,
    providers: ProviderFactory | None = None,
) -> FastAPI:
    """The runtime app. ``env`` is where bots find ``apiKeyEnv`` variables (default: process);
    ``providers`` builds the bots' LLM clients (default: from each Bot's ``llm``)."""
    settings = settings or RuntimeSettings()
    keys = keyring if keyring is not None else load_keyring(settings)  # fail fast on bad keys
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            config_store = store
            if config_store is None:
                # PostgreSQL connects on first use: a replica starting before its database
                # serves /healthz, answers /readyz 503 with the reason, and syncs once it is up.
                config_store = await open_config_store(
                    settings.store_url(),
                    prefix=settings.table_prefix,
                    watch_application_name=f"kubebots-watch-{settings.effective_replica_id()}"[:63],
                    wait_for_server=True,
                )
                stack.push_async_callback(config_store.close)
            rate_limiter = limiter
            if rate_limiter is None:
                rate_limiter = _limiter(settings)
                stack.push_async_callback(rate_limiter.close)
            quota = Quota(
                rate_limiter,
                metrics,
                default_requests_per_minute=settings.requests_per_minute,
                on_outage=settings.rate_limit_on_outage,
            )
            stack.push_async_callback(quota.close)  # before the limiter closes: queued charges
            secrets = secret_resolver(settings, env)
            last_good = LastGoodConfigs()  # bots build from it while the store is unreachable
            manager = BotManager(
                config_loader=StoreConfigLoader(config_store, last_good),
                max_bots=settings.max_bots,
                idle_ttl=settings.idle_ttl,
                factory=BotFactory(
                    env=env,
                    secrets=secrets,
                    providers=providers,
                    data_dir=settings.data_dir,
                    egress=settings.egress_policy(),
                ),
            )
            stack.push_async_callback(manager.close)
            rollouts, counters = RolloutTable(), RolloutCounters()
            shadows = ShadowMirrors(settings.shadow_max_in_flight)
            stack.push_async_callback(shadows.close)  # before the bots close
            sync = StoreSync(
                config_store,
                manager,
                SyncSettings(
                    replica_id=settings.effective_replica_id(),
                    preload=settings.preload,
                    heartbeat_interval=settings.heartbeat_interval,
                    tool_retry_interval=settings.tool_retry_interval,
                ),
                last_good,
                rollouts=rollouts,
                counters=counters,
            )
            await sync.start()
            stack.push_async_callback(sync.stop)
            metrics.watch_runtime(manager, sync)
            metrics.watch_rollouts(rollouts, counters, shadows)
            if settings.freeze_gc:
                freeze_startup_objects()
            app.state.bot_manager = manager
            app.state.runtime = RuntimeState(
                settings=settings,
                store=config_store,
                manager=manager,
                sync=sync,
                quota=quota,
                keyring=keys,
                metrics=metrics,
                failed_auth=FailedAuthentications(settings.auth_failures_per_minute),
                rollouts=rollouts,
                rollout_counters=counters,
                shadows=shadows,
            )
            yield

    app = FastAPI(
        title="kubebots runtime",
        version="0.1.0",
        description="Multi-tenant chat API for the bots of a kubebots config store.",
        lifespan=lifespan,
    )
    register_exception_handlers(app)
    register_openai_error_handlers(app)  # after them: /v1 answers errors in OpenAI's shape
    for module in (chat, conversations, bots, openai, models, health):
        app.include_router(module.router)
    if settings.ui:
        app.include_router(ui_router())
    app.add_middleware(
        RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes
    )
    if settings.cors_origins:  # outermost: preflights are answered before authentication
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    return app
