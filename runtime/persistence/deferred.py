"""A store opened on first use, and again on a later use after a failed open.

So a process can start while its database is not up yet (a quick start where every pod starts
at once): the first calls fail with the open's own error (a :class:`StorageError`, without
credentials) and a later call opens it. Failed opens are not retried more often than every
``retry_interval`` seconds: in between, calls fail at once with the last error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, Protocol, TypeVar

from ..errors import StorageError


class Closable(Protocol):
    async def close(self) -> None: ...


T = TypeVar("T", bound=Closable)


class Deferred(Generic[T]):
    """Holds ``open()``'s result once it succeeded (:meth:`opened`); :meth:`close` closes it.

    A store's ``Deferred...`` wrapper subclasses it, names the store in :attr:`what` and forwards
    each call to the store :meth:`opened` returns.
    """

    #: the store, as messages name it (``"the <what> is closed"``)
    what: ClassVar[str] = "store"

    def __init__(
        self,
        open: Callable[[], Awaitable[T]],
        *,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open
        self._retry_interval = retry_interval
        self._clock = clock
        self._value: T | None = None
        self._error: StorageError | None = None
        self._failed_at = 0.0
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def last_error(self) -> StorageError | None:
        """Why the last open failed (None once open)."""
        return self._error

    @property
    def current(self) -> T | None:
        """The opened value, without opening it (None until an open succeeded)."""
        return self._value

    async def opened(self) -> T:
        """The store, opened now unless it is already (or the last failure is too recent)."""
        if self._value is not None:
            return self._value
        async with self._lock:
            if self._closed:
                raise StorageError(f"the {self.what} is closed")
            if self._value is not None:
                return self._value
            if self._error is not None and self._clock() - self._failed_at < self._retry_interval:
                raise self._error.with_traceback(None)
            try:
                self._value = await self._open()
            except StorageError as exc:
                self._error, self._failed_at = exc, self._clock()
                raise
            self._error = None
            return self._value

    async def try_open(self) -> bool:
        """Open now if possible; ``False`` (the error kept in :attr:`last_error`) if not."""
        try:
            await self.opened()
        except StorageError:
            return False
        return True

    async def close(self) -> None:
        """Close the store if it was opened; later calls fail. Idempotent."""
        async with self._lock:
            self._closed = True
            value, self._value = self._value, None
        if value is not None:
            await value.close()
