"""Timestamps: aware UTC, and exact integer microseconds for SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from kubebots.runtime.persistence.times import from_micros, to_micros, to_utc, utc_now


def test_to_utc_keeps_the_instant_and_takes_naive_times_as_utc() -> None:
    tokyo = datetime(2030, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    assert to_utc(tokyo) == datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    assert to_utc(tokyo).tzinfo is UTC
    assert to_utc(datetime(2030, 1, 1)) == datetime(2030, 1, 1, tzinfo=UTC)


def test_micros_round_trip_exactly() -> None:
    at = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert to_micros(at) == 1904281689123456
    assert from_micros(to_micros(at)) == at
    assert from_micros(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert to_micros(at + timedelta(microseconds=1)) - to_micros(at) == 1


def test_utc_now_is_aware_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
