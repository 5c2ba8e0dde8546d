"""Argument checks every backend applies alike, so switching backends never changes which inputs
are accepted: text PostgreSQL can store (no NUL, no lone surrogates), plain lowercase SQL names
(so table names never need quoting rules), and counts and durations that make sense.
"""

from __future__ import annotations

import math
import re

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def check_text(what: str, value: object) -> str:
    """``value`` if it is a str that every backend can store (no NUL, valid Unicode)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text (no lone surrogates)") from None
    return value


def check_identifier(what: str, value: object, *, max_length: int = 63) -> str:
    """``value`` if it is a plain lowercase SQL identifier of at most ``max_length`` characters
    (63 is PostgreSQL's limit; a prefix leaves room for the longest table name after it)."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value) or len(value) > max_length:
        raise ValueError(
            f"{what} must match [a-z_][a-z0-9_]* and be at most {max_length} characters"
        )
    return value


def check_count(what: str, value: object) -> int:
    """``value`` if it is an int that is not negative (an offset, a limit, a cost)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if value < 0:
        raise ValueError(f"{what} must not be negative")
    return value


def check_seconds(what: str, value: object) -> float:
    """``value`` as a float if it is a finite, non-negative number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be finite and not negative")
    return float(value)
