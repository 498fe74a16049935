"""Cron schedules: the routes, who may do what, and fires (punctual, once, latest only)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.schedules.cron import CRON_PATTERN
from orchestrator.schedules.queries import fire_due
from orchestrator.services import Services
from tests.support.users import account, admin_auth

SCHEDULES = "/api/v1/schedules"


def spec(**fields: Any) -> dict[str, Any]:
    return {
        "name": "nightly report",
        "cron": "30 2 * * *",
        "timezone": "Europe/Paris",
        "job": {"title": "report", "queue": "reports", "payload": {"kind": "daily"}},
        **fields,
    }


async def test_create_read_and_list_a_schedule(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    viewer = await account(services, "vera", role="viewer")
    response = await client.post(SCHEDULES, json=spec(), headers=alice)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{SCHEDULES}/{body['id']}"
    assert body["enabled"] is True
    assert body["job"] == {
        "title": "report",
        "queue": "reports",
        "payload": {"kind": "daily"},
        "priority": 0,
        "max_attempts": 3,
    }
    assert (body["last_fired_at"], body["last_job_id"], body["version"]) == (None, None, 1)
    next_run = datetime.fromisoformat(body["next_run_at"])
    paris = next_run.astimezone(ZoneInfo("Europe/Paris"))
    assert (paris.hour, paris.minute) in ((2, 30), (3, 0))  # 03:00 only on a spring-forward night
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(days=1, hours=1)

    assert (await client.get(f"{SCHEDULES}/{body['id']}", headers=viewer)).json() == body
    listed = await client.get(SCHEDULES, headers=viewer)
    assert listed.json() == {"schedules": [body]}
    assert (await client.post(SCHEDULES, json=spec(), headers=viewer)).status_code == 403


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "0 0 30 2 *"}, "cron"),  # February 30th never comes
        ({"cron": "every day"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0"}, "cron"),  # the schema's pattern says so too
        ({"cron": "0 0 L * *"}, "cron"),
        ({"cron": "* * * * *\n"}, "cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"timezone": "/etc/localtime"}, "timezone"),
        ({"job": {"queue": "q"}}, "title"),
        ({"job": {"title": "t", "unique_key": "k"}}, "unique_key"),
        ({"enabled": "yes"}, "enabled"),
        ({"name": ""}, "name"),
    ],
)
async def test_bad_schedules_get_422_in_the_envelope_and_create_nothing(
    client: httpx.AsyncClient, services: Services, fields: dict[str, Any], field: str
) -> None:
    headers = admin_auth(services)
    response = await client.post(SCHEDULES, json=spec(**fields), headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert field in str(error["details"])
    assert (await client.get(SCHEDULES, headers=headers)).json() == {"schedules": []}


async def test_the_openapi_document_states_the_cron_grammar_and_the_zones(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("ScheduleCreate", "SchedulePatch"):
        fields = schemas[name]["properties"]
        assert fields["cron"]["pattern"] == CRON_PATTERN
        assert {"UTC", "Europe/Paris", "America/Argentina/Buenos_Aires"} <= set(
            fields["timezone"]["enum"]
        )
        assert "Europe/Atlantis" not in fields["timezone"]["enum"]
    # An edit's fields may be left out, never null.
    assert all("anyOf" not in field for field in schemas["SchedulePatch"]["properties"].values())


async def test_edits_and_deletes_need_if_match_and_the_creator_or_an_admin(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    bob = await account(services, "bob")
    created = await client.post(SCHEDULES, json=spec(), headers=alice)
    url = f"{SCHEDULES}/{created.json()['id']}"
    etag = created.headers["etag"]

    assert (await client.patch(url, json={"name": "n"}, headers=alice)).status_code == 428
    stale = await client.patch(url, json={"name": "n"}, headers={**alice, "If-Match": '"x"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == etag
    other = await client.patch(url, json={"name": "n"}, headers={**bob, "If-Match": etag})
    assert other.status_code == 403
    bad = await client.patch(url, json={"cron": "0 0 31 4 *"}, headers={**alice, "If-Match": etag})
    assert bad.status_code == 422
    null = await client.patch(url, json={"name": None}, headers={**alice, "If-Match": etag})
    assert null.status_code == 422

    # A new cron and zone compute the next fire anew; disabling clears it.
    edited = await client.patch(
        url, json={"cron": "@hourly", "timezone": "UTC"}, headers={**alice, "If-Match": etag}
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["cron"] == "@hourly"
    assert datetime.fromisoformat(edited.json()["next_run_at"]).minute == 0
    assert edited.json()["version"] == 2
    off = await client.patch(
        url, json={"enabled": False}, headers={**alice, "If-Match": edited.headers["etag"]}
    )
    assert (off.json()["enabled"], off.json()["next_run_at"]) == (False, None)
    on = await client.patch(
        url, json={"enabled": True}, headers={**admin_auth(services), "If-Match": "*"}
    )
    assert on.json()["next_run_at"] is not None

    assert (await client.delete(url, headers=alice)).status_code == 428
    assert (await client.delete(url, headers={**alice, "If-Match": etag})).status_code == 412
    deleted = await client.delete(url, headers={**alice, "If-Match": on.headers["etag"]})
    assert deleted.status_code == 204
    assert (await client.get(url, headers=alice)).status_code == 404


async def wait_for_jobs(
    client: httpx.AsyncClient, headers: dict[str, str], queue: str, count: int
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        jobs: list[dict[str, Any]] = (
            await client.get(f"/api/v1/jobs?queue={queue}", headers=headers)
        ).json()["jobs"]
        if len(jobs) >= count or time.monotonic() > deadline:
            return jobs
        await asyncio.sleep(0.05)


async def test_a_fire_makes_one_job_on_time_with_the_fire_key_and_logs_it(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    revision = await latest_revision(services.db)
    body = spec(cron="* * * * * *", timezone="UTC", job={"title": "tick", "queue": "ticks"})
    schedule = (await client.post(f"{SCHEDULES}", json=body, headers=alice)).json()
    jobs = await wait_for_jobs(client, alice, "ticks", 1)
    assert jobs, "no fire within 10 s"
    job = jobs[0]
    fire = datetime.fromisoformat(job["unique_key"].removeprefix(f"schedule:{schedule['id']}:"))
    assert job["unique_key"] == f"schedule:{schedule['id']}:{fire:%Y-%m-%dT%H:%M:%SZ}"
    assert timedelta(0) <= datetime.fromisoformat(job["created_at"]) - fire < timedelta(seconds=1)
    assert (job["name"], job["created_by"], job["status"]) == ("tick", "alice", "pending")

    fired = (await client.get(f"{SCHEDULES}/{schedule['id']}", headers=alice)).json()
    assert fired["last_fired_at"] is not None
    assert fired["last_job_id"] is not None
    changes = await changes_after(services.db, revision=revision)
    ops = [(c.collection, c.op) for c in changes]
    assert ops[0] == ("schedules", "create")
    assert ("jobs", "create") in ops
    assert ("schedules", "update") in ops


async def test_after_downtime_only_the_latest_missed_fire_runs(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    # At midnight UTC on January 1st: the latest fire is this year's, unless a test runs
    # across New Year's midnight.
    body = spec(cron="0 0 1 1 *", timezone="UTC", job={"title": "t", "queue": "catch-up"})
    schedule = (await client.post(SCHEDULES, json=body, headers=headers)).json()
    this_year = datetime(datetime.now(UTC).year, 1, 1, tzinfo=UTC)
    # As if every process had been down for three years: three fires missed.
    async with services.db.transaction() as tx:
        await tx.execute(
            "UPDATE schedules SET next_run_at = :at WHERE id = :id",
            {"at": this_year.replace(year=this_year.year - 2), "id": schedule["id"]},
        )
    await fire_due(services.db)
    jobs = await wait_for_jobs(client, headers, "catch-up", 1)
    assert [job["unique_key"] for job in jobs] == [
        f"schedule:{schedule['id']}:{this_year:%Y-%m-%dT%H:%M:%SZ}"
    ]
    after = (await client.get(f"{SCHEDULES}/{schedule['id']}", headers=headers)).json()
    assert datetime.fromisoformat(after["next_run_at"]) == this_year.replace(
        year=this_year.year + 1
    )
    assert datetime.fromisoformat(after["last_fired_at"]) == this_year
    assert after["last_job_id"] == jobs[0]["id"]
    assert await fire_due(services.db) == 0  # nothing more is due
    assert len(await wait_for_jobs(client, headers, "catch-up", 1)) == 1


async def test_a_disabled_schedule_never_fires(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    body = spec(cron="* * * * * *", enabled=False, job={"title": "t", "queue": "off"})
    schedule = (await client.post(SCHEDULES, json=body, headers=headers)).json()
    assert schedule["next_run_at"] is None
    # Even with a fire time long past left in the row.
    async with services.db.transaction() as tx:
        await tx.execute(
            "UPDATE schedules SET next_run_at = :at WHERE id = :id",
            {"at": datetime.now(UTC) - timedelta(hours=1), "id": schedule["id"]},
        )
    assert await fire_due(services.db) == 0
    assert (await client.get("/api/v1/jobs?queue=off", headers=headers)).json()["jobs"] == []


PARIS = ZoneInfo("Europe/Paris")


def clock_changes(year: int) -> tuple[datetime, datetime]:
    """The instants Paris springs forward and falls back in `year`."""
    moment, found = datetime(year, 1, 1, tzinfo=UTC), list[datetime]()
    while len(found) < 2:
        later = moment + timedelta(hours=1)
        if later.astimezone(PARIS).utcoffset() != moment.astimezone(PARIS).utcoffset():
            found.append(later)
        moment = later
    return found[0], found[1]


async def walk(db: Any, start: datetime, hours: int) -> None:
    """Fire what is due as the database clock would read every 10 minutes for `hours`."""
    for step in range(hours * 6 + 1):
        await fire_due(db, at=start + timedelta(minutes=10 * step))


def at_half_past_two(day: datetime) -> datetime:
    """02:30 in Paris on `day`'s date, its first occurrence, in UTC."""
    local = day.astimezone(PARIS)
    return local.replace(hour=2, minute=30, fold=0).astimezone(UTC)


@pytest.mark.parametrize("change", ["spring", "fall"])
async def test_daylight_saving_changes_neither_skip_nor_double_a_fire(
    client: httpx.AsyncClient, services: Services, change: str
) -> None:
    headers = admin_auth(services)
    # Next year's changes: fire times the schedules' own firer will not reach meanwhile.
    spring, fall = clock_changes(datetime.now(UTC).year + 1)
    jump = spring if change == "spring" else fall
    start = jump - timedelta(days=1, hours=12)
    daily = (
        await client.post(
            SCHEDULES,
            json=spec(cron="30 2 * * *", job={"title": "daily", "queue": "daily"}),
            headers=headers,
        )
    ).json()
    hourly = (
        await client.post(
            SCHEDULES,
            json=spec(cron="0 * * * *", job={"title": "hourly", "queue": "hourly"}),
            headers=headers,
        )
    ).json()
    async with services.db.transaction() as tx:
        daily_first = at_half_past_two(start)
        if daily_first < start:
            daily_first += timedelta(days=1)
        for schedule, first in ((daily, daily_first), (hourly, start)):
            await tx.execute(
                "UPDATE schedules SET next_run_at = :at WHERE id = :id",
                {"at": first, "id": schedule["id"]},
            )
    await walk(services.db, start, hours=72)

    async def fires(schedule: dict[str, Any], queue: str) -> list[datetime]:
        jobs = (await client.get(f"/api/v1/jobs?queue={queue}", headers=headers)).json()["jobs"]
        prefix = f"schedule:{schedule['id']}:"
        return sorted(
            datetime.fromisoformat(job["unique_key"].removeprefix(prefix)) for job in jobs
        )

    days = [at_half_past_two(start + timedelta(days=n)) for n in range(4)]
    expected = [day for day in days if start <= day <= start + timedelta(hours=72)]
    if change == "spring":
        # 02:30 does not exist that night: it fires when the clock jumps to 03:00, once.
        expected = [jump if day.date() == jump.date() else day for day in expected]
    else:
        # 02:30 comes twice that night: the first one fires, the second does not.
        assert jump - at_half_past_two(jump) == timedelta(minutes=30)
    assert await fires(daily, "daily") == expected
    # An hourly schedule runs in real time: every hour once, 23 or 25 in the local day.
    hours = await fires(hourly, "hourly")
    assert hours == [start + timedelta(hours=n) for n in range(73)]
    assert len({hour.astimezone(PARIS).replace(tzinfo=None) for hour in hours}) == 73 + (
        -1 if change == "fall" else 0
    )
