"""A :class:`~kubebots.runtime.ratelimit.base.RateLimiter` shared by replicas through Redis.

Each call is one Lua script run (``EVALSHA``; a server that lost its scripts, ``NOSCRIPT``, is
sent them again): Redis runs a script atomically, and the script stamps entries with the
server's own clock (``TIME``), so replicas with skewed clocks agree and no window of
``window_seconds`` ever admits more than ``limit`` (an exact sliding log, as in PostgreSQL).

One ``(scope, client_id)`` is two keys, ``<prefix>rl:{<client>}:<scope>:log`` and ``...:sum``:

* ``log``, a sorted set of the entries: score the time in microseconds, member
  ``<time>:<seq>:<cost>`` (unique by the per-key ``seq``);
* ``sum``, a hash of the live cost (``sum``) and the sequence (``seq``), kept up to date on
  every add and every prune (a prune reads the expired members once, subtracts their costs and
  removes them), so a call costs O(log n) plus the entries it expires; only a denial walks the
  oldest entries, to compute ``retry_after``.

Both keys expire (``PEXPIRE``) one window after their latest entry: an idle client holds no
memory. Client ids and scopes are percent-encoded (no ``{ } :`` remain), so no two keys
collide; the hash tag ``{<client>}`` puts a client's keys in one Redis Cluster slot.

A Redis outage fails fast: connecting and every reply are bounded by ``socket_timeout`` (0.5 s
by default) and commands are not retried, so a call fails with :class:`RateLimitStorageError`
within about a second; the pool connects again by itself once Redis answers. Messages never
quote the URL's user name or password.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from ..errors import RateLimitStorageError
from ..persistence.checks import check_text
from ..persistence.redaction import redact, url_secrets
from .base import Charge, Decision, Limit, RateLimiter, verdict

#: The key prefix unless told otherwise (one per installation sharing a Redis).
DEFAULT_KEY_PREFIX: Final = "kubebots:"
#: Seconds a call waits for a pooled connection while all are busy.
POOL_WAIT: Final = 5.0

# Shared by both scripts: the server's time, pruning one key, adding one entry.
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = string.format('%d', now)

-- Drops the entries of log at or before now - win; returns the live cost.
local function live(log, sum, win)
  local cutoff = string.format('%d', now - win)
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  if #old > 0 then
    local freed = 0
    for _, member in ipairs(old) do
      freed = freed + tonumber(string.match(member, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
    redis.call('HINCRBY', sum, 'sum', string.format('%d', -freed))
  end
  if redis.call('EXISTS', log) == 0 then
    redis.call('DEL', sum)
    return 0
  end
  return tonumber(redis.call('HGET', sum, 'sum') or '0')
end

local function add(log, sum, cost, ttl)
  local seq = redis.call('HINCRBY', sum, 'seq', 1)
  redis.call('HINCRBY', sum, 'sum', cost)
  redis.call('ZADD', log, stamp, stamp .. ':' .. seq .. ':' .. cost)
  redis.call('PEXPIRE', log, ttl)
  redis.call('PEXPIRE', sum, ttl)
end
"""

# KEYS: per limit, its log and sum. ARGV: per limit, limit, cost, window (us), key ttl (ms).
# Returns {allowed, index (1-based) of the deciding limit, its live cost, then on a denial that
# can fit one day: age (us), cost of its oldest entries, just enough to free what it needs}.
_ADMIT = (
    _COMMON
    + """
local n = #KEYS / 2
local used = 0
for i = 1, n do
  local log, sum = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, cost = tonumber(ARGV[4 * i - 3]), tonumber(ARGV[4 * i - 2])
  used = live(log, sum, tonumber(ARGV[4 * i - 1]))
  local need = used + math.max(cost, 1) - limit
  if need > 0 then
    local reply = {0, i, used}
    if math.max(cost, 1) <= limit then
      local freed, start = 0, 0
      while freed < need do
        local batch = redis.call('ZRANGE', log, start, start + 63, 'WITHSCORES')
        if #batch == 0 then break end
        for j = 1, #batch, 2 do
          local c = tonumber(string.match(batch[j], ':(%d+)$'))
          reply[#reply + 1] = now - tonumber(batch[j + 1])
          reply[#reply + 1] = c
          freed = freed + c
          if freed >= need then break end
        end
        start = start + 64
      end
    end
    return reply
  end
end
for i = 1, n do
  if ARGV[4 * i - 2] ~= '0' then
    add(KEYS[2 * i - 1], KEYS[2 * i], ARGV[4 * i - 2], ARGV[4 * i])
  end
end
return {1, n, used}
"""
)

# KEYS: per charge, its log and sum. ARGV: per charge, cost, window (us), key ttl (ms).
_RECORD = (
    _COMMON
    + """
for i = 1, #KEYS / 2 do
  live(KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[3 * i - 1]))
end
for i = 1, #KEYS / 2 do
  add(KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 * i - 2], ARGV[3 * i])
end
return 0
"""
)


@dataclass(frozen=True, slots=True)
class _Script:
    text: str
    sha: str

    @classmethod
    def of(cls, text: str) -> _Script:
        return cls(text, hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest())


_ADMIT_SCRIPT: Final = _Script.of(_ADMIT)
_RECORD_SCRIPT: Final = _Script.of(_RECORD)


def check_key_prefix(prefix: object) -> str:
    """``prefix`` if it is text of at most 64 characters without ``{`` or ``}`` (which would
    move the keys' Redis Cluster hash tag), else TypeError or ValueError."""
    text = check_text("prefix", prefix)
    if "{" in text or "}" in text or len(text) > 64:
        raise ValueError("prefix must be at most 64 characters without '{' or '}'")
    return text


def _window_args(window_seconds: float) -> tuple[str, str]:
    """The window in microseconds and the keys' time to live in milliseconds, as script args."""
    micros = max(1, round(window_seconds * 1_000_000))
    return str(micros), str(math.ceil(window_seconds * 1000) + 1)


class RedisRateLimiter(RateLimiter):
    """Sliding logs in Redis (see the module docs); open it with :meth:`open`.

    :attr:`problem` says why the last call failed to reach Redis (``None`` once one succeeded).
    """

    def __init__(self, client: Redis, prefix: str, secrets: Sequence[str]) -> None:
        """Wrap a client whose scripts are loaded; use :meth:`open` instead."""
        self._client: Redis | None = client
        self._prefix = prefix
        self._secrets = list(secrets)
        #: why the last call could not reach Redis (None since one succeeded)
        self.problem: str | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_KEY_PREFIX,
        max_connections: int = 32,
        socket_timeout: float = 0.5,
    ) -> RedisRateLimiter:
        """Connect to ``url`` (``redis://``, ``rediss://`` or ``unix://``) and load the scripts.

        At most ``max_connections`` connections; ``socket_timeout`` (seconds) bounds connecting
        and each reply. Errors are :class:`RateLimitStorageError`s that never quote the URL's user
        name or password.
        """
        prefix = check_key_prefix(prefix)
        secrets = url_secrets(url)
        try:
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=POOL_WAIT,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
                client_name="kubebots-ratelimit",
            )
        except (ValueError, TypeError):
            raise RateLimitStorageError("Redis connection failed: the URL is malformed") from None
        limiter = cls(Redis(connection_pool=pool), prefix, secrets)
        try:
            async with limiter._connection("connection") as client:
                for script in (_ADMIT_SCRIPT, _RECORD_SCRIPT):
                    await client.script_load(script.text)
        except RateLimitStorageError:
            await limiter.close()
            raise
        return limiter

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Redis]:
        """The client; its errors become :class:`RateLimitStorageError` (without secrets)."""
        if self._client is None:
            raise RateLimitStorageError("the rate limiter is closed")
        try:
            yield self._client
        except (RedisError, OSError) as exc:
            text = redact(str(exc).strip() or type(exc).__name__, self._secrets)
            error = RateLimitStorageError(f"Redis {what} failed: {text}")
            self.problem = error.message
            raise error from None
        self.problem = None

    async def _run(self, script: _Script, keys: list[str], args: list[str]) -> object:
        """Run ``script`` by its hash, sending it again if the server lost it."""
        async with self._connection("rate limiter") as client:
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await client.script_load(script.text)
                return await client.evalsha(script.sha, len(keys), *keys, *args)

    def _keys(self, scope: str, client_id: str) -> list[str]:
        base = f"{self._prefix}rl:{{{quote(client_id, safe='')}}}:{quote(scope, safe='')}"
        return [f"{base}:log", f"{base}:sum"]

    async def _admit(self, client_id: str, limits: tuple[Limit, ...]) -> Decision:
        keys: list[str] = []
        args: list[str] = []
        for limit in limits:
            keys += self._keys(limit.scope, client_id)
            micros, ttl = _window_args(limit.window_seconds)
            args += [str(limit.limit), str(limit.cost), micros, ttl]
        reply = await self._run(_ADMIT_SCRIPT, keys, args)
        if not isinstance(reply, list) or len(reply) < 3:
            raise RateLimitStorageError("Redis returned no rate limit decision")
        allowed, index, used, *oldest = (int(value) for value in reply)
        decision = verdict(used, _entries(oldest), limits[index - 1])
        if decision.allowed != bool(allowed):
            raise RateLimitStorageError("Redis's rate limit decision disagrees with the rule")
        return decision

    async def _record_many(self, charges: tuple[Charge, ...]) -> None:
        keys: list[str] = []
        args: list[str] = []
        for charge in charges:
            keys += self._keys(charge.scope, charge.client_id)
            micros, ttl = _window_args(charge.window_seconds)
            args += [str(charge.cost), micros, ttl]
        await self._run(_RECORD_SCRIPT, keys, args)

    async def close(self) -> None:
        """Close the connections; later calls raise :class:`RateLimitStorageError`. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)


def _entries(flat: list[int]) -> Iterable[tuple[float, int]]:
    """``(age_seconds, cost)`` pairs from the script's flat ``age_us, cost, ...`` list."""
    return ((flat[i] / 1_000_000, flat[i + 1]) for i in range(0, len(flat) - 1, 2))
