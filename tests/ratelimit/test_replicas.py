"""Exactness across replicas: three OS processes, each with its own limiter (and a wall clock
skewed differently), hammer one client at once through the shared server."""

from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest

from kubebots.runtime.ratelimit import Limit

from .replica_worker import Job, Outcome, run

SKEWS = (-3600.0, 0.0, 3600.0)  # seconds: an hour behind, on time, an hour ahead


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """``(backend, url, prefix)`` of each shared backend."""
    if request.param == "postgres":
        return (
            "postgres",
            request.getfixturevalue("postgres_url"),
            request.getfixturevalue("pg_prefix"),
        )
    return ("redis", request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))


def replicas(
    backend: tuple[str, str, str], limit: Limit, calls: int, seconds: float = 60.0
) -> list[list[Outcome]]:
    """Run three replicas at once (released together by a barrier), each making ``calls`` calls
    at most, for ``seconds`` at most; each one's outcomes."""
    kind, url, prefix = backend
    client_id = f"client-{uuid.uuid4().hex}"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(3, mp_context=context) as pool:
        barrier = manager.Barrier(3)
        futures = [
            pool.submit(
                run, Job(kind, url, prefix, client_id, limit, calls, seconds, 8, skew), barrier
            )
            for skew in SKEWS
        ]
        return [future.result(timeout=120) for future in futures]


def test_replicas_admit_exactly_the_limit(backend: tuple[str, str, str]) -> None:
    """Demand (3 x 80) above the limit (100): exactly the limit is admitted, from all three."""
    outcomes = replicas(backend, Limit("requests", 100, window_seconds=60.0), calls=80)
    admitted = [sum(o.allowed for o in mine) for mine in outcomes]
    assert sum(admitted) == 100
    assert all(n > 0 for n in admitted)


def test_no_sliding_window_admits_more_than_the_limit(backend: tuple[str, str, str]) -> None:
    """A short window over several windows of load: the calls sent and answered within any
    window's span (so stamped by the server inside it) never number more than the limit."""
    window, limit = 0.5, 20
    outcomes = replicas(backend, Limit("requests", limit, window_seconds=window), 50_000, 1.7)
    allowed = sorted((o for mine in outcomes for o in mine if o.allowed), key=lambda o: o.sent)
    first, last = allowed[0].sent, max(o.answered for o in allowed)
    assert last - first > 2 * window  # the load spanned several windows ...
    assert len(allowed) > 2 * limit  # ... and the window slid: more than one window's worth
    for start in allowed:
        inside = [o for o in allowed if o.sent >= start.sent and o.answered < start.sent + window]
        assert len(inside) <= limit
