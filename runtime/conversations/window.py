"""A replica's cache of conversation windows, kept valid by the database's notifications.

The PostgreSQL store keeps the last messages of recently used conversations here, so a turn's
``recent()`` usually needs no round trip. It is bounded: at most ``capacity`` conversations
(least recently used go first), each holding at most the most messages a ``recent()`` asked of
it. Reads fill it, and so do the store's own appends that follow a cached window.

Every write to the table notifies its channel (:func:`appended`, :func:`deleted`,
:func:`bot_changed` build the payloads: a hash of the conversation or bot, never an id, the
writing store's random ``origin``, and the new last seq of an append).
:meth:`WindowCache.notified` drops what another writer changed; a store's own writes are applied
when they return (their notification may come back first, so it is skipped). The
cache is trusted only while the store listens (:meth:`WindowCache.live`): it is cleared, and
bypassed, from the moment the listening connection is lost until ``LISTEN`` runs again. A read
that a notification (or a state change) overtook does not fill it. What a notification not yet
processed leaves stale is caught by the appends' ``after`` (see
:class:`~kubebots.runtime.conversations.base.ConversationChanged`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from .base import ConversationKey, StoredMessage

#: How many conversations a store caches unless told otherwise.
DEFAULT_CAPACITY: Final = 10_000


def _token(*parts: str) -> str:
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=12).hexdigest()


def conversation_token(key: ConversationKey) -> str:
    """The conversation as notifications name it (a hash: ids never travel in payloads)."""
    return _token(*key)


def bot_token(bot_id: str) -> str:
    """The bot as notifications name it (a hash, apart from every conversation's)."""
    return _token("bot", bot_id)


def new_origin() -> str:
    """A random name for one store instance, which its notifications carry."""
    return secrets.token_hex(6)


def appended(key: ConversationKey, origin: str) -> str:
    """The payload of an append to ``key`` without its new last seq (which SQL appends)."""
    return f"a:{conversation_token(key)}:{origin}:"


def deleted(key: ConversationKey, origin: str) -> str:
    """The payload of a deleted conversation."""
    return f"d:{conversation_token(key)}:{origin}"


def bot_changed(bot_id: str, origin: str) -> str:
    """The payload of deletes across a bot (``delete_bot``, a retention's ``prune``)."""
    return f"b:{bot_token(bot_id)}:{origin}"


@dataclass(slots=True)
class _Window:
    bot: str  # bot_token of the conversation's bot
    messages: list[StoredMessage]  # the last ones, contiguous by seq
    complete: bool  # nothing older is stored: a recent() of any size is answered
    want: int  # the most messages a recent() asked of it: what it keeps

    @property
    def last(self) -> int:
        return self.messages[-1].seq if self.messages else 0


class Read:
    """One ``recent()`` that missed the cache: :meth:`fill` with what the database returned.

    Fills nothing if a notification about the conversation, an own write or a change of the
    listening state came while it ran.
    """

    __slots__ = ("_cache", "_done", "_generation", "_token")

    def __init__(self, cache: WindowCache, token: str) -> None:
        self._cache = cache
        self._token = token
        self._generation = cache.generation
        self._done = False
        cache.reading[token] = cache.reading.get(token, 0) + 1

    def fill(self, key: ConversationKey, messages: list[StoredMessage], limit: int) -> None:
        """Cache ``messages``, what ``recent(key, limit)`` returned (unless overtaken)."""
        spoiled = self._finish()
        cache = self._cache
        if spoiled or not cache.is_live or cache.generation != self._generation or limit == 0:
            return
        cache.put(
            self._token,
            _Window(bot_token(key.bot_id), list(messages), len(messages) < limit, limit),
        )

    def _finish(self) -> bool:
        """End the read; whether it was overtaken. Idempotent."""
        if self._done:
            return True
        self._done = True
        cache = self._cache
        count = cache.reading[self._token] - 1
        spoiled = self._token in cache.spoiled
        if count:
            cache.reading[self._token] = count
        else:
            del cache.reading[self._token]
            cache.spoiled.discard(self._token)
        return spoiled

    def __enter__(self) -> Read:
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()


class WindowCache:
    """Windows of at most ``capacity`` conversations; empty and bypassed until :meth:`live`.
    ``origin`` names the store's own notifications (:func:`new_origin`)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, origin: str = "") -> None:
        self.capacity = capacity
        self.origin = origin or new_origin()
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self.is_live = False
        #: bumped by every change of the listening state: reads begun before do not fill
        self.generation = 0
        #: conversations being read (how many reads each), and those overtaken meanwhile
        self.reading: dict[str, int] = {}
        self.spoiled: set[str] = set()

    def __len__(self) -> int:
        return len(self._windows)

    def live(self, listening: bool) -> None:
        """The store listens (True) or lost its listening connection (False): clear either
        way, since what was written while nobody listened is unknown."""
        self.is_live = listening and self.capacity > 0
        self.generation += 1
        self._windows.clear()
        self.spoiled.update(self.reading)

    def lookup(self, key: ConversationKey, limit: int) -> list[StoredMessage] | None:
        """The last ``limit`` messages if the cache holds them, else None (read them)."""
        if not self.is_live:
            return None
        token = conversation_token(key)
        window = self._windows.get(token)
        if window is None or (limit > len(window.messages) and not window.complete):
            return None
        self._windows.move_to_end(token)
        window.want = max(window.want, limit)
        return window.messages[-limit:] if limit else []

    def read(self, key: ConversationKey) -> Read:
        """Start a read of ``key`` that missed; use as a context manager around it."""
        return Read(self, conversation_token(key))

    def put(self, token: str, window: _Window) -> None:
        self._windows[token] = window
        self._windows.move_to_end(token)
        while len(self._windows) > self.capacity:
            self._windows.popitem(last=False)

    def stored(self, key: ConversationKey, added: list[StoredMessage]) -> None:
        """This store appended ``added`` (contiguous seqs) to ``key``: extend its window if the
        append followed it, else forget the window."""
        token = conversation_token(key)
        if token in self.reading:
            self.spoiled.add(token)
        window = self._windows.get(token)
        if window is None or not added:
            return
        if window.last != added[0].seq - 1:
            del self._windows[token]
            return
        window.messages.extend(added)
        if len(window.messages) > window.want:
            del window.messages[: len(window.messages) - window.want]
            window.complete = False
        self._windows.move_to_end(token)

    def forget(self, key: ConversationKey) -> None:
        """Drop the window of ``key`` (this store deleted it, or found it changed)."""
        self._drop(conversation_token(key))

    def forget_bot(self, bot_id: str) -> None:
        """Drop every window of ``bot_id`` (this store deleted across the bot)."""
        self._drop_bot(bot_token(bot_id))

    def notified(self, payload: str) -> None:
        """Apply a notification of the table's channel; this store's own are skipped."""
        kind, token, origin, *rest = [*payload.split(":"), "", ""][:4]
        if origin == self.origin:
            return
        if kind == "a" and token and rest[0].isdigit():
            window = self._windows.get(token)
            if window is not None and window.last < int(rest[0]):
                del self._windows[token]
            if token in self.reading:
                self.spoiled.add(token)
        elif kind == "d" and token:
            self._drop(token)
        elif kind == "b" and token:
            self._drop_bot(token)
        else:  # a payload this release does not know (a newer writer's): trust nothing cached
            self._windows.clear()
            self.spoiled.update(self.reading)

    def _drop(self, token: str) -> None:
        self._windows.pop(token, None)
        if token in self.reading:
            self.spoiled.add(token)

    def _drop_bot(self, bot: str) -> None:
        for token in [t for t, w in self._windows.items() if w.bot == bot]:
            del self._windows[token]
        self.spoiled.update(self.reading)  # a read in flight may be of the bot's
