"""A store as its connections name it: its error class, its name in messages, its pool's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import StorageError

E = TypeVar("E", bound=StorageError)


@dataclass(frozen=True, slots=True)
class Owner(Generic[E]):
    """Every driver error of the store's connections becomes an ``error`` (without credentials)
    naming the store by ``what``; ``pool_name`` names its PostgreSQL pool in psycopg's logs."""

    error: type[E]
    what: str
    pool_name: str = "kubebots"

    def closed(self) -> E:
        return self.error(f"the {self.what} is closed")
