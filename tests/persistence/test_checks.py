"""The argument checks every backend applies alike."""

from __future__ import annotations

import pytest

from kubebots.runtime.persistence.checks import (
    check_count,
    check_identifier,
    check_seconds,
    check_text,
)


def test_text_must_be_storable() -> None:
    assert check_text("content", "héllo ✓") == "héllo ✓"
    with pytest.raises(TypeError, match="content must be a str"):
        check_text("content", b"bytes")
    with pytest.raises(ValueError, match="NUL"):
        check_text("content", "a\x00b")
    with pytest.raises(ValueError, match="lone surrogates"):
        check_text("content", "a\ud800")


@pytest.mark.parametrize("name", ["", "Upper", "has-dash", "1digit", "a b", 'x"; --', "é"])
def test_identifiers_are_plain_lowercase_sql_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"table must match \[a-z_\]"):
        check_identifier("table", name)


def test_identifier_length_limit() -> None:
    assert check_identifier("table", "a" * 63) == "a" * 63
    with pytest.raises(ValueError, match="at most 63"):
        check_identifier("table", "a" * 64)
    assert check_identifier("prefix", "kb_" + "x" * 48, max_length=51)
    with pytest.raises(ValueError, match="at most 51"):
        check_identifier("prefix", "kb_" + "x" * 49, max_length=51)
    with pytest.raises(ValueError):
        check_identifier("table", None)


def test_counts_are_ints_that_are_not_negative() -> None:
    assert check_count("limit", 0) == 0
    for bad in (True, 1.0, None, "1"):
        with pytest.raises(TypeError, match="limit must be an int"):
            check_count("limit", bad)
    with pytest.raises(ValueError, match="must not be negative"):
        check_count("limit", -1)


def test_seconds_are_finite_and_not_negative() -> None:
    assert check_seconds("timeout", 2) == 2.0
    assert check_seconds("timeout", 0.5) == 0.5
    for bad in (True, "1", None):
        with pytest.raises(TypeError):
            check_seconds("timeout", bad)
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            check_seconds("timeout", bad)
