"""Honest liveness: ``/healthz`` fails once the operator has not reached the Kubernetes API for
longer than ``KUBEBOTS_API_LIVENESS_TIMEOUT``, or has fallen behind (a loop stopped, a handler
hangs) for longer than ``KUBEBOTS_STALL_TIMEOUT``.

kopf's ``--liveness`` endpoint runs the ``@kopf.on.probe`` handlers on each request (caching a
success for 10 s): it answers 200 with their results, or 500 when one raises. Our probe asks the
API for ``/version`` with the operator's own address and credentials (a bounded, authenticated
call: a bad token is a 401) and remembers when it last got an answer. A failed call within the
timeout still answers 200 (the body says what failed): a short API hiccup is no reason to
restart; beyond it, the probe raises and the kubelet restarts the operator, which then logs in
afresh (new connections, a re-read token, a re-resolved address).

The config store plays no part: with the store down the operator keeps retrying its handlers,
and a restart would not bring the database back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from .kube import describe_api_error

#: An API round trip: returns when the API answered, raises when it did not.
ApiCheck = Callable[[], Awaitable[None]]


class ApiUnreachableError(Exception):
    """The API has not answered for longer than the liveness timeout."""


class ApiLiveness:
    """The decision behind ``/healthz``: alive while the API answered within ``timeout`` s.

    The start counts as an answer: a new operator gets ``timeout`` seconds to reach the API.
    """

    def __init__(
        self,
        check: ApiCheck,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._timeout = timeout
        self._clock = clock
        self.last_answer = clock()

    async def probe(self) -> dict[str, Any]:
        """The probe's result (kopf puts it in the ``/healthz`` body), or ApiUnreachableError."""
        try:
            await self._check()
        except Exception as exc:  # noqa: BLE001 - whatever failed, the API did not answer
            silent = self._clock() - self.last_answer
            reason = describe_api_error(exc)
            if silent > self._timeout:
                raise ApiUnreachableError(
                    f"the Kubernetes API has not answered for {silent:.0f}s "
                    f"(limit {self._timeout:g}s): {reason}"
                ) from None
            return {"api": "unreachable", "silent_seconds": round(silent, 1), "error": reason}
        self.last_answer = self._clock()
        return {"api": "ok"}


class VersionCheck:
    """``GET /version`` with the official client, bounded by ``timeout`` seconds, on a thread
    of its own: behind the operator's queued API calls (a burst of 10,000 Bots) the check
    starved, and a busy operator was restarted as if the API were gone."""

    def __init__(self, api_client: Any, timeout: float) -> None:
        from kubernetes import client

        self._api = client.VersionApi(api_client)
        self._timeout = timeout
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kubebots-liveness")

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self._thread, partial(self._api.get_code, _request_timeout=self._timeout)
        )
        await asyncio.wait_for(call, self._timeout + 1)


class Lagging(Protocol):
    """A part of the operator that can fall behind: its lag in seconds and what it means."""

    def lag(self) -> tuple[float, str]: ...


class OperatorStalledError(Exception):
    """A part of the operator has not progressed for longer than the stall timeout."""


def progress(parts: Mapping[str, Lagging], *, timeout: float) -> dict[str, Any]:
    """The lag of every part (kopf puts it in the ``/healthz`` body), or OperatorStalledError
    once one lags more than ``timeout`` seconds. A config store that is down is no lag: the
    parts keep retrying (and a restart would not bring the database back); a loop that stopped,
    a call that hangs or a handler that never returns is."""
    lags = {name: part.lag() for name, part in parts.items()}
    for name, (lag, what) in lags.items():
        if lag > timeout:
            raise OperatorStalledError(f"{name} behind: {what} (limit {timeout:g}s)")
    return {name: round(lag, 1) for name, (lag, _) in lags.items()}
