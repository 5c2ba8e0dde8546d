"""API keys held as SHA-256 digests, and the :class:`Principal` (client) each one identifies.

A :class:`KeyRing` never stores a plaintext key: keys are hashed when loaded, and a presented key
is hashed, looked up by digest and confirmed with :func:`hmac.compare_digest`. A presented value
is always hashed, so presenting a stored digest (``sha256:...``) never authenticates.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: The prefix of a key digest as :func:`hash_key` writes it and key files may hold it.
DIGEST_PREFIX: Final = "sha256:"
#: The client id the ``admin_key`` of :meth:`KeyRing.load` authenticates as.
ADMIN_CLIENT_ID: Final = "admin"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def hash_key(key: str) -> str:
    """The digest of ``key`` as ``sha256:<64 lowercase hex>`` (what key files may list).

    Raises :class:`ValueError` for text that is not encodable as UTF-8 (lone surrogates).
    """
    return DIGEST_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated client (tenant) and what it may do.

    ``bots`` is an allow-list of bot ids or :mod:`fnmatch` patterns (``"team-a:*"``); ``None``
    allows every bot. The per-minute limits are ``None`` when the client has none.
    """

    client_id: str
    bots: tuple[str, ...] | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    admin: bool = False

    def may_use(self, bot_id: str) -> bool:
        """Whether ``bot_id`` matches the allow-list (case-sensitive; always True without one)."""
        if self.bots is None:
            return True
        return any(fnmatch.fnmatchcase(bot_id, pattern) for pattern in self.bots)


class KeyRing:
    """Maps key digests to principals. Build it with :meth:`load`; an empty ring admits nobody."""

    __slots__ = ("_by_digest",)

    def __init__(self, principals: Mapping[str, Principal] | None = None) -> None:
        """Wrap ``{digest: principal}``; every digest must look like :func:`hash_key`'s output."""
        by_digest: dict[str, tuple[bytes, Principal]] = {}
        for digest, principal in (principals or {}).items():
            if not _DIGEST.fullmatch(digest):
                raise ValueError("key ring entries must be keyed by sha256:<64 lowercase hex>")
            by_digest[digest] = (digest.encode("ascii"), principal)
        self._by_digest = by_digest

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        json_text: str | None = None,
        admin_key: str | None = None,
    ) -> KeyRing:
        """Read the clients of a YAML/JSON file and/or a JSON string, plus an optional admin key.

        Every source given is merged; a key or client id listed twice (in any sources) is an
        error. ``admin_key`` (plaintext or ``sha256:`` digest) authenticates as a principal
        with client id ``"admin"``, every bot, no limits and admin rights. Raises
        :class:`~kubebots.runtime.errors.ConfigurationError` naming fields, never key values.
        """
        from .loader import load_principals

        return cls(load_principals(path, json_text=json_text, admin_key=admin_key))

    def authenticate(self, presented_key: str) -> Principal | None:
        """The principal ``presented_key`` belongs to, or ``None`` for an unknown key."""
        if not isinstance(presented_key, str) or not presented_key:
            return None
        try:
            digest = hash_key(presented_key)
        except ValueError:
            return None
        found = self._by_digest.get(digest)
        if found is None:
            return None
        stored, principal = found
        return principal if hmac.compare_digest(stored, digest.encode("ascii")) else None

    def __len__(self) -> int:
        """How many keys the ring accepts."""
        return len(self._by_digest)

    def __repr__(self) -> str:
        clients = {p.client_id for _, p in self._by_digest.values()}
        return f"<KeyRing keys={len(self)} clients={len(clients)}>"
