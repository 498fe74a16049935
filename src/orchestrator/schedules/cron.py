"""Cron expressions in a named time zone: when a schedule fires.

croniter parses and matches the expression (five fields, six with a leading seconds field,
the @-names, ranges, steps, names). Daylight-saving changes are decided here, as Vixie and
Debian cron decide them, so that a change neither skips nor doubles a fire:
- An expression whose hour field is `*` (it fires every hour or more often) runs in real
  time: each matching instant fires once, whatever the clock shows.
- Any other expression names wall-clock times. A time the clock skips (spring forward) fires
  at the moment the clock jumps; a time it shows twice (fall back) fires the first time only.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from croniter import CroniterBadDateError, CroniterError, croniter

NAMES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# A wall-clock expression can match every second of an hour the clock shows twice before a
# later match: bound the candidates we look at past that many.
_MAX_CANDIDATES = 20_000


class InvalidSchedule(ValueError):
    """The expression or the zone cannot make a schedule; `field` names which."""

    def __init__(self, field: Literal["cron", "timezone"], reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class NeverFires(InvalidSchedule):
    """A well-formed expression no date matches (`0 0 30 2 *`)."""

    def __init__(self) -> None:
        super().__init__("cron", "never fires (no such date)")


def _any_case(words: Sequence[str]) -> str:
    return "|".join("".join(f"[{c.upper()}{c.lower()}]" for c in word) for word in words)


def _field(value: str) -> str:
    """A comma list of `*`, a value or a range (`a-b`, reversed ones wrap), each with an
    optional `/step`."""
    item = f"(\\*|({value})(-({value}))?)(/[1-9][0-9]?)?"
    return f"{item}(,{item})*"


_SIXTY = _field("[0-5]?[0-9]")
_SEP = "[ \\t]+"
# The expressions a schedule takes, as a regular expression that JSON Schema, Python and
# pydantic's Rust engine read alike (its schema states it): what matches is valid cron for
# croniter, and only a date that never comes (`0 0 30 2 *`) is refused after it.
CRON_PATTERN = (
    f"^[ \\t]*(@({_any_case([name[1:] for name in sorted(NAMES)])})"
    f"|({_SIXTY}{_SEP})?{_SIXTY}{_SEP}{_field('2[0-3]|[01]?[0-9]')}"
    f"{_SEP}{_field('3[01]|[12][0-9]|0?[1-9]')}"
    f"{_SEP}{_field('1[0-2]|0?[1-9]|' + _any_case(MONTHS))}"
    f"{_SEP}{_field('0?[0-7]|' + _any_case(DAYS))})[ \\t]*$"
)


@functools.cache
def zone_names() -> frozenset[str]:
    """The IANA zones this host knows (a schedule's `timezone` is one of them)."""
    return frozenset(zoneinfo.available_timezones())


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A valid expression in a valid zone."""

    expression: str
    zone: zoneinfo.ZoneInfo
    real_time: bool

    def next_fire(self, after: datetime) -> datetime:
        """The first fire time strictly after `after`, in UTC (CroniterBadDateError: none)."""
        if self.real_time:
            it = croniter(self.expression, after.astimezone(self.zone), second_at_beginning=True)
            return _utc(it.get_next(datetime))
        wall = croniter(
            self.expression,
            after.astimezone(self.zone).replace(tzinfo=None),
            second_at_beginning=True,
        )
        for _ in range(_MAX_CANDIDATES):
            instant = _instant(wall.get_next(datetime), self.zone)
            if instant > after:  # not yet fired (the first pass of a repeated hour has)
                return instant
        raise CroniterBadDateError("no fire time found")

    def previous_fire(self, at_or_before: datetime) -> datetime:
        """The last fire time at or before `at_or_before`, in UTC."""
        # Fire times are whole seconds: the last one before the next second is the one.
        bound = at_or_before.replace(microsecond=0) + timedelta(seconds=1)
        if self.real_time:
            it = croniter(self.expression, bound.astimezone(self.zone), second_at_beginning=True)
            return _utc(it.get_prev(datetime))
        wall = croniter(
            self.expression,
            bound.astimezone(self.zone).replace(tzinfo=None),
            second_at_beginning=True,
        )
        for _ in range(_MAX_CANDIDATES):
            instant = _instant(wall.get_prev(datetime), self.zone)
            if instant <= at_or_before:
                return instant
        raise CroniterBadDateError("no fire time found")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _instant(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The instant a wall-clock time names: its first occurrence, or, when the clock skips
    it, the moment the clock jumps."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped: fold=0 reads it with the offset before the jump (an instant after it), fold=1
    # with the offset after (an instant before it). The jump lies between; find its second.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    offset_after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == offset_after:
            high = middle
        else:
            low = middle
    return high


def parse_schedule(expression: str, timezone: str, *, now: datetime) -> CronSchedule:
    """The schedule, or InvalidSchedule saying what is wrong (a cron that never fires too)."""
    if timezone not in zone_names():
        raise InvalidSchedule("timezone", "not an IANA time zone name, such as Europe/Paris")
    zone = zoneinfo.ZoneInfo(timezone)
    fields = expression.split()
    if len(fields) == 1 and fields[0].lower() in NAMES:
        normal = fields[0].lower()
        real_time = normal == "@hourly"
    elif len(fields) in (5, 6):
        normal = " ".join(fields)
        real_time = fields[-4] == "*"  # the hour field, in either form
    else:
        raise InvalidSchedule(
            "cron",
            "five fields (minute to day of week), six with a leading seconds field, "
            "or one of " + ", ".join(sorted(NAMES)),
        )
    try:
        valid = croniter.is_valid(normal, second_at_beginning=True)
    except CroniterError:
        valid = False
    if not valid:
        raise InvalidSchedule("cron", "not a valid cron expression")
    schedule = CronSchedule(expression=normal, zone=zone, real_time=real_time)
    try:
        schedule.next_fire(now)
    except (CroniterBadDateError, CroniterError):
        raise NeverFires from None
    return schedule
