"""``put``, ``delete`` and ``delete_many`` of every backend: what a write changes, said once.

A backend supplies one write transaction (:meth:`Writes._writing`): it reads the counter and a
bot's live entry (an SQL store locks the counter row there, so revisions commit in order) and
records a put or a tombstone at the next revision.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, Unpack

from ..ids import validate_bot_id
from .base import PutOptions, Spec, StoreEntry, WriteConflict
from .codec import Write, encode_write


class WriteTransaction(Protocol):
    """One backend transaction that writes (see the module docstring)."""

    async def live(self, bot_id: str) -> tuple[int, StoreEntry | None]:
        """The current revision and the live entry of ``bot_id`` (None: absent or deleted)."""
        ...

    async def put(self, write: Write) -> int:
        """Record ``write`` at the next revision; return it."""
        ...

    async def tombstone(self, bot_id: str) -> int:
        """Tombstone the live ``bot_id`` at the next revision; return it."""
        ...

    async def revision(self) -> int:
        """The current revision."""
        ...


async def _delete(tx: WriteTransaction, bot_id: str) -> int:
    current, live = await tx.live(bot_id)
    return current if live is None else await tx.tombstone(bot_id)


class Writes(ABC):
    """The writes of a :class:`~kubebots.runtime.configstore.base.ConfigStore`."""

    @abstractmethod
    def _writing(self) -> AbstractAsyncContextManager[WriteTransaction]:
        """One write transaction, committed when the block ends without an error."""

    async def put(self, bot_id: str, config: Spec, **how: Unpack[PutOptions]) -> int:
        """Write ``config``; return the entry's revision (the live one for a no-op)."""
        write = encode_write(bot_id, config, how["generation"], how["uid"], how.get("annotations"))
        expected = how.get("if_revision")
        async with self._writing() as tx:
            _, live = await tx.live(bot_id)
            if expected is not None and (live.revision if live else 0) != expected:
                found = live.revision if live else "none"
                raise WriteConflict(
                    f"bot {bot_id} changed since it was read (expected revision {expected}, "
                    f"found {found}): nothing was written; read it again and re-apply"
                )
            if live is not None and write.repeats(live):
                return live.revision
            return await tx.put(write)

    async def delete(self, bot_id: str) -> int:
        """Tombstone the bot; return the tombstone's revision (the current one if absent)."""
        validate_bot_id(bot_id)
        async with self._writing() as tx:
            return await _delete(tx, bot_id)

    async def delete_many(self, bot_ids: Sequence[str]) -> int:
        """Tombstone every live one of ``bot_ids`` in one transaction (one commit, one lock of
        the counter); return the revision after it."""
        for bot_id in bot_ids:
            validate_bot_id(bot_id)
        async with self._writing() as tx:
            revisions = [await _delete(tx, bot_id) for bot_id in bot_ids]
            return revisions[-1] if revisions else await tx.revision()
