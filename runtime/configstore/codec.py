"""What every config store accepts, and how stored rows become entries and events again.

Every backend accepts exactly the same inputs: a config must be a JSON object whose strings are
storable text (no NUL, no lone surrogates: PostgreSQL rejects both), numbers fit where they go,
and the table prefix is a plain lowercase identifier (so table names never need quoting rules).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..ids import validate_bot_id
from ..persistence.checks import check_text
from ..persistence.times import to_utc
from .base import Notes, Spec, StoreEntry, StoreError, WatchEvent

#: Events a watcher fetches per query.
WATCH_BATCH: Final = 1000
#: The largest generation or revision (a signed 64-bit column).
MAX_INT64: Final = 2**63 - 1


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


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Write:
    """A checked ``put``: the plain config and annotations, and their JSON text."""

    bot_id: str
    generation: int
    uid: str
    config: dict[str, Any]
    annotations: dict[str, str]

    @property
    def config_json(self) -> str:
        return _json(self.config)

    @property
    def annotations_json(self) -> str:
        return _json(self.annotations)

    def repeats(self, live: StoreEntry) -> bool:
        """True when this write must not replace ``live``: a stale generation of the same Bot
        (same ``uid``), or an exact repeat."""
        if live.uid != self.uid:
            return False
        if self.generation < live.generation:
            return True
        return (
            self.generation == live.generation
            and dict(live.config) == self.config
            and dict(live.annotations) == self.annotations
        )


def encode_write(bot_id: str, config: Spec, generation: int, uid: str, annotations: Notes) -> Write:
    """The arguments of ``put``, checked (raises TypeError/ValueError) and made plain."""
    validate_bot_id(bot_id)
    if not isinstance(config, Mapping):
        raise TypeError("config must be a mapping")
    if annotations is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise TypeError("annotations must map str to str")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
        raise ValueError("generation must be a positive int")
    if generation > MAX_INT64:
        raise ValueError("generation must be at most 2**63-1")
    if not isinstance(uid, str) or not uid:
        raise ValueError("uid must be a non-empty string")
    check_text("uid", uid)
    plain_config: dict[str, Any] = _plain(config, "config")
    plain_annotations: dict[str, str] = _plain(annotations or {}, "annotations")
    return Write(bot_id, generation, uid, plain_config, plain_annotations)


def decode_object(value: object) -> dict[str, Any]:
    """A stored JSON object (text, or already decoded by the driver) as a fresh dict."""
    decoded = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(decoded, dict):
        raise TypeError("a stored config or annotations value is not a JSON object")
    return decoded


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
