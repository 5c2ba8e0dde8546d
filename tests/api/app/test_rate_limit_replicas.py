"""One client's rate limit holds across replicas: three app instances share the Postgres limiter.

Three runtimes run on the same PostgreSQL store and table prefix, so ``rate_limit_backend=auto``
gives each a :class:`PostgresRateLimiter` on the same ``<prefix>ratelimit`` table. Client
``limited`` (60 requests per minute) fires 300 chat requests round-robin over the three, 16 at
a time, well within one minute.

Tolerance: none. The limiter is an exact sliding log (one advisory-locked transaction per
decision, stamped by the database clock), and a request it admits is answered 200 by the echo
bot, so exactly 60 of the 300 succeed -- provided every answer is a 200 or a 429 (asserted: a
request admitted by the limiter and then failing would otherwise hide in the count) and the
burst ends within the minute (asserted: later, the first admissions leave the window and more
requests are rightly admitted). Separate per-replica limiters would admit up to 180.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import psycopg
from psycopg import sql

from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import default_bots, put_bots, running_app
from .helpers import TIMEOUT, assert_error

HEADERS_LIMITED = {"Authorization": "Bearer key-l-0123456789"}
LIMIT = 60
REQUESTS = 300
REPLICAS = 3
WORKERS = 16


def test_limit_is_shared_by_three_replicas(
    postgres_url: str, pg_prefix: str, fake_llm: FakeOpenAIServer
) -> None:
    put_bots(postgres_url, pg_prefix, default_bots(fake_llm))
    with ExitStack() as stack:
        urls = [
            stack.enter_context(running_app(postgres_url, prefix=pg_prefix)).url
            for _ in range(REPLICAS)
        ]
        local = threading.local()
        clients: list[httpx.Client] = []
        lock = threading.Lock()

        def send(i: int) -> tuple[int, httpx.Response]:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(headers=HEADERS_LIMITED, timeout=TIMEOUT)
                with lock:
                    clients.append(client)
            replica = i % REPLICAS
            response = client.post(
                f"{urls[replica]}/bots/default:echo/chat",
                json={"message": f"request {i}", "conversation_id": f"burst-{i}"},
            )
            return replica, response

        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                results = list(pool.map(send, range(REQUESTS)))
        finally:
            for client in clients:
                client.close()
        elapsed = time.monotonic() - started

    assert elapsed < 50, f"the burst took {elapsed:.1f} s: the 60 s window no longer bounds it"
    statuses = Counter(response.status_code for _, response in results)
    by_replica = Counter((replica, response.status_code) for replica, response in results)
    assert set(statuses) <= {200, 429}, by_replica
    assert statuses[200] == LIMIT, by_replica
    assert statuses[429] == REQUESTS - LIMIT, by_replica
    # The first requests are spread over all three, so each admitted some of the 60.
    assert all(by_replica[replica, 200] > 0 for replica in range(REPLICAS)), by_replica

    for _, response in results:
        if response.status_code == 200:
            assert response.json()["response"].startswith("echo: request ")
            continue
        body = assert_error(response, 429, "RateLimitError")
        assert body["message"] == f"rate limit of {LIMIT} requests per minute exceeded"
        retry_after = int(response.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        assert 0 < body["detail"]["retry_after"] <= 60
        assert retry_after >= body["detail"]["retry_after"]  # whole seconds, rounded up

    # The shared log holds exactly the 60 admissions.
    with psycopg.connect(postgres_url) as conn:
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(cost), 0) FROM {} WHERE scope = %s AND client_id = %s"
        ).format(sql.Identifier(f"{pg_prefix}ratelimit"))
        row = conn.execute(query, ("requests", "limited")).fetchone()
    assert row == (LIMIT, LIMIT)
