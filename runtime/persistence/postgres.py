"""Opening a PostgreSQL pool the one way every kubebots table owner does it.

One direct connection comes first and runs ``setup`` (create tables): it fails fast with
libpq's reason, where a pool would retry in the background until its timeout. Then the pool is
opened and waited for. ``error`` turns a driver error into the caller's error type, without
credentials; the driver exception is never chained (its text may quote the URL).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

Conn = psycopg.AsyncConnection[TupleRow]


async def open_pool(
    url: str,
    *,
    options: dict[str, Any],
    size: int,
    name: str,
    setup: Callable[[Conn], Awaitable[None]],
    error: Callable[[psycopg.Error], Exception],
) -> AsyncConnectionPool[Conn]:
    timeout = float(options["connect_timeout"])
    try:
        async with await psycopg.AsyncConnection.connect(url, **options) as conn:
            await setup(conn)
    except psycopg.Error as exc:
        raise error(exc) from None
    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        url,
        kwargs=options,
        min_size=1,
        max_size=size,
        open=False,
        check=AsyncConnectionPool.check_connection,
        timeout=timeout,
        name=name,
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except BaseException as exc:
        await pool.close()
        if isinstance(exc, psycopg.Error):
            raise error(exc) from None
        raise
    return pool
