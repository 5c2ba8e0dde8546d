"""An opener that fails like a database that is not up yet, then opens (for deferred stores)."""

from __future__ import annotations

from typing import Generic, TypeVar

from kubebots.runtime.errors import StorageError

T = TypeVar("T")


class Opener(Generic[T]):
    """Fails ``failures`` times with ``error`` (as a refused connection does), then opens
    ``value``; counts its ``attempts``."""

    def __init__(
        self, value: T, *, failures: int, error: type[StorageError] = StorageError
    ) -> None:
        self.value = value
        self.failures = failures
        self.error = error
        self.attempts = 0

    async def __call__(self) -> T:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error(f"PostgreSQL connection failed: refused (attempt {self.attempts})")
        return self.value
