"""Helpers every config store shares: argument checks, JSON encoding and value conversion.

Every backend accepts exactly the same inputs: a config must be a JSON object whose strings are
storable text (no NUL, no lone surrogates: PostgreSQL rejects both), numbers fit where they go,
and the table prefix is a plain lowercase identifier (so table names never need quoting rules).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..storage._sql import check_text
from .base import StoreEntry, StoreError, WatchEvent, check_write

#: The table prefix every SQL store uses unless told otherwise.
DEFAULT_PREFIX: Final = "kubebots_"
#: Events a watcher fetches per query.
WATCH_BATCH: Final = 1000
#: The largest generation or revision (a signed 64-bit column).
MAX_INT64: Final = 2**63 - 1

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
# The longest table suffix is "replica_bots" (12 characters); names stay within 63.
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,50}")


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is a plain lowercase SQL identifier of at most 51 characters."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError("prefix must match [a-z_][a-z0-9_]* and be at most 51 characters")
    return prefix


def check_seconds(what: str, value: float) -> float:
    """``value`` as a float if it is a finite, non-negative number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be finite and not negative")
    return float(value)


def check_revision(what: str, value: int | None, *, optional: bool = False) -> int | None:
    """``value`` if it is a revision-like int in ``0..2**63-1`` (or ``None`` when optional)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if not 0 <= value <= MAX_INT64:
        raise ValueError(f"{what} must be between 0 and 2**63-1")
    return value


def _plain(value: object, path: str) -> Any:
    """``value`` as plain JSON data (dicts, lists, str, int, float, bool, None), checked."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} must be a finite number")
        return value
    if isinstance(value, str):
        return check_text(path, value)
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} must have str keys")
            plain[check_text(f"a key of {path}", key)] = _plain(item, f"{path}.{key}")
        return plain
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{path} holds a {type(value).__name__}, which is not JSON")


@dataclass(frozen=True, slots=True)
class Write:
    """A checked ``put``: the plain config and annotations, and their JSON text."""

    config: dict[str, Any]
    annotations: dict[str, str]
    config_json: str
    annotations_json: str


def encode_write(
    bot_id: str,
    config: Mapping[str, Any],
    generation: int,
    uid: str,
    annotations: Mapping[str, str] | None,
) -> Write:
    """Check the arguments of ``put`` and encode them (raises TypeError/ValueError)."""
    check_write(bot_id, config, generation, uid, annotations)
    if generation > MAX_INT64:
        raise ValueError("generation must be at most 2**63-1")
    check_text("uid", uid)
    plain_config: dict[str, Any] = _plain(config, "config")
    plain_annotations: dict[str, str] = _plain(annotations or {}, "annotations")
    return Write(
        config=plain_config,
        annotations=plain_annotations,
        config_json=json.dumps(plain_config, separators=(",", ":"), ensure_ascii=False),
        annotations_json=json.dumps(plain_annotations, separators=(",", ":"), ensure_ascii=False),
    )


def decode_object(value: object) -> dict[str, Any]:
    """A stored JSON object (text, or already decoded by the driver) as a fresh dict."""
    decoded = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(decoded, dict):
        raise TypeError("a stored config or annotations value is not a JSON object")
    return decoded


def to_utc(value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_micros(value: datetime) -> int:
    """``value`` as integer microseconds since the epoch (how SQLite stores times)."""
    return (to_utc(value) - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """Integer microseconds since the epoch as a UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(value))


def make_entry(row: Sequence[Any]) -> StoreEntry:
    """A stored row ``(bot_id, config, generation, uid, annotations, revision, updated_at)`` as
    a :class:`StoreEntry`; the JSON columns may be text or decoded, the time a datetime."""
    bot_id, config, generation, uid, annotations, revision, updated_at = row
    return StoreEntry(
        bot_id=bot_id,
        config=decode_object(config),
        generation=int(generation),
        uid=uid,
        revision=int(revision),
        updated_at=to_utc(updated_at),
        annotations=decode_object(annotations),
    )


def make_event(row: Sequence[Any]) -> WatchEvent:
    """A stored event row ``(revision, type, bot_id, config, generation, uid, annotations,
    created_at)`` as a :class:`WatchEvent` (the entry columns are NULL for DELETE)."""
    revision, kind, bot_id, config, generation, uid, annotations, created_at = row
    if kind == "DELETE":
        return WatchEvent("DELETE", bot_id, int(revision))
    if kind != "PUT" or generation is None or uid is None:
        raise StoreError("the event log holds a malformed row")
    entry = make_entry((bot_id, config, generation, uid, annotations, revision, created_at))
    return WatchEvent("PUT", bot_id, int(revision), entry)
