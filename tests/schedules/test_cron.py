"""When a schedule fires: cron forms, names, zones, and both daylight-saving changes."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.schedules.cron import CRON_PATTERN, InvalidSchedule, NeverFires, parse_schedule

NOW = datetime(2026, 3, 1, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def fires(cron: str, zone: str, start: datetime, count: int) -> list[str]:
    schedule = parse_schedule(cron, zone, now=NOW)
    moment, seen = start.astimezone(UTC), []
    for _ in range(count):
        moment = schedule.next_fire(moment)
        seen.append(moment.astimezone(ZoneInfo(zone)).isoformat())
    return seen


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


def test_a_daily_time_the_clock_skips_fires_when_it_jumps_once() -> None:
    # 2026-03-29 02:00 → 03:00 in Paris: 02:30 does not exist that night.
    for cron in ("30 2 * * *", "0 30 2 * * *"):
        assert fires(cron, "Europe/Paris", paris(2026, 3, 28, 12), 3) == [
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
            "2026-03-31T02:30:00+02:00",
        ]


def test_a_daily_time_the_clock_shows_twice_fires_once() -> None:
    # 2026-10-25 03:00 → 02:00 in Paris: 02:30 happens twice that night.
    for cron in ("30 2 * * *", "0 30 2 * * *"):
        assert fires(cron, "Europe/Paris", paris(2026, 10, 24, 12), 3) == [
            "2026-10-25T02:30:00+02:00",
            "2026-10-26T02:30:00+01:00",
            "2026-10-27T02:30:00+01:00",
        ]


def test_several_skipped_times_make_one_fire_and_a_repeated_hour_is_not_run_again() -> None:
    assert fires("*/20 2 * * *", "Europe/Paris", paris(2026, 3, 28, 12), 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
    ]
    assert fires("*/20 2 * * *", "Europe/Paris", paris(2026, 10, 24, 12), 4) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:20:00+02:00",
        "2026-10-25T02:40:00+02:00",
        "2026-10-26T02:00:00+01:00",
    ]


def test_hourly_schedules_run_in_real_time_across_both_changes() -> None:
    assert fires("@hourly", "Europe/Paris", paris(2026, 3, 29, 0, 30), 3) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",  # one real hour after the last
        "2026-03-29T04:00:00+02:00",
    ]
    assert fires("0 30 * * * *", "Europe/Paris", paris(2026, 10, 25, 1, 45), 3) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",  # one real hour after the last
        "2026-10-25T03:30:00+01:00",
    ]


def test_names_ranges_steps_month_and_day_names_and_leading_seconds() -> None:
    start = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday
    assert fires("@daily", "UTC", start, 1) == ["2026-01-06T00:00:00+00:00"]
    assert fires("@weekly", "UTC", start, 1) == ["2026-01-11T00:00:00+00:00"]
    assert fires("0 9-17/4 * jan mon-fri", "UTC", start, 3) == [
        "2026-01-05T13:00:00+00:00",
        "2026-01-05T17:00:00+00:00",
        "2026-01-06T09:00:00+00:00",
    ]
    assert fires("*/15 * * * * *", "UTC", start, 2) == [
        "2026-01-05T10:00:15+00:00",
        "2026-01-05T10:00:30+00:00",
    ]
    assert fires("0 0 12 * * *", "Asia/Kolkata", start, 1) == ["2026-01-06T12:00:00+05:30"]


def test_the_latest_fire_at_or_before_a_moment() -> None:
    schedule = parse_schedule("*/10 * * * *", "UTC", now=NOW)
    assert schedule.previous_fire(datetime(2026, 1, 1, 10, 25, 3, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 20, tzinfo=UTC
    )
    assert schedule.previous_fire(datetime(2026, 1, 1, 10, 20, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 20, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("cron", "zone", "field"),
    [
        ("0 0 30 2 *", "UTC", "cron"),  # February 30th never comes
        ("0 0 31 4 *", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("* * * *", "UTC", "cron"),
        ("* * * * * * 2030", "UTC", "cron"),
        ("@reboot", "UTC", "cron"),
        ("* * * * *", "Mars/Olympus", "timezone"),
        ("* * * * *", "../../etc/passwd", "timezone"),
        ("* * * * *", "", "timezone"),
    ],
)
def test_what_cannot_make_a_schedule_says_which_field(cron: str, zone: str, field: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_schedule(cron, zone, now=NOW)
    assert caught.value.field == field


SCHEMA_PATTERN = re.compile(CRON_PATTERN.removesuffix("$") + r"\Z", re.ASCII)


@settings(max_examples=300, deadline=None, database=None)
@given(st.from_regex(SCHEMA_PATTERN))
def test_whatever_the_schema_pattern_admits_fires_or_names_a_date_that_never_comes(
    cron: str,
) -> None:
    # The one refusal JSON Schema cannot state (`0 0 30 2 *`) is NeverFires.
    with contextlib.suppress(NeverFires):
        parse_schedule(cron, "Europe/Paris", now=NOW)


@pytest.mark.parametrize(
    "cron",
    [
        "0",
        "* * * *",
        "0 0 L * *",
        "0 0 ? * *",
        "0 0 * * 5#3",
        "@reboot",
        "* * * * *\n",
        "*/0 * * * *",
    ],
)
def test_the_schema_pattern_refuses_what_is_not_in_its_grammar(cron: str) -> None:
    assert SCHEMA_PATTERN.match(cron) is None
