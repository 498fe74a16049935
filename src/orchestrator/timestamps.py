"""UTC timestamps with an explicit offset, the same from both backends."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime | str) -> datetime:
    """A timezone-aware UTC datetime from a driver value (SQLite gives ISO text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_instant(value: datetime) -> datetime:
    """An aware `value` in UTC; one that an offset carries past the years 1 to 9999 (which
    datetime cannot hold) is read as the first or the last instant there is."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def iso(value: datetime) -> str:
    """`2025-01-14T10:00:00.000000+00:00`: microseconds and offset, always."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_text(value: datetime | str) -> str:
    """`iso(as_utc(value))`, skipping the parse when SQLite already holds exactly that text."""
    if isinstance(value, str) and len(value) == 32 and value.endswith("+00:00"):
        return value
    return iso(as_utc(value))
