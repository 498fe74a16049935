"""Schedules in the change feed: subscribable on `/ws` and SSE like jobs and tasks."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from orchestrator.db.changelog import latest_revision
from tests.changes.support import (
    Stack,
    collect_changes,
    connected,
    first_events,
    recv_json,
    send_json,
    subscribe,
    ws_connect,
)

pytestmark = pytest.mark.e2e

SCHEDULE = {
    "name": "weekly",
    "cron": "0 9 * * mon",
    "timezone": "Europe/Paris",
    "job": {"title": "report", "queue": "reports"},
}


async def test_schedule_changes_reach_ws_and_sse_subscribers_of_schedules(stack: Stack) -> None:
    token = await stack.user(f"u{uuid.uuid4().hex[:10]}")
    headers = {"Authorization": f"Bearer {token}"}
    since = await latest_revision(stack.db)
    async with ws_connect(stack.server, token) as ws, httpx.AsyncClient(timeout=10) as client:
        await connected(ws)
        assert (await subscribe(ws, ["schedules"], since=since))["type"] == "subscribed"
        created = await client.post(
            f"{stack.server.url}/api/v1/schedules", json=SCHEDULE, headers=headers
        )
        assert created.status_code == 201, created.text
        url = f"{stack.server.url}/api/v1/schedules/{created.json()['id']}"
        deleted = await client.delete(url, headers={**headers, "If-Match": created.headers["etag"]})
        assert deleted.status_code == 204
        last = await latest_revision(stack.db)

        changes = await collect_changes(ws, until_revision=last)
        assert [(c["collection"], c["op"], c["id"]) for c in changes] == [
            ("schedules", "create", created.json()["id"]),
            ("schedules", "delete", created.json()["id"]),
        ]
        assert changes[0]["data"] == created.json()

        events = await first_events(
            client,
            f"{stack.server.url}/api/v1/changes?collections=schedules&since={since}",
            headers,
            3,
        )
        assert [orjson.loads(e["data"]).get("op") for e in events] == [None, "create", "delete"]
        assert orjson.loads(events[1]["data"])["data"] == created.json()


async def test_a_subscription_without_collections_follows_jobs_and_tasks_only(
    stack: Stack,
) -> None:
    token = await stack.user(f"u{uuid.uuid4().hex[:10]}")
    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        await send_json(ws, {"type": "subscribe"})
        ack = await recv_json(ws)
        assert (ack["type"], ack["collections"]) == ("subscribed", ["jobs", "tasks"])
        await send_json(ws, {"type": "unsubscribe"})
        assert await recv_json(ws) == {
            "type": "unsubscribed",
            "collections": ["jobs", "tasks", "schedules", "queues", "job_logs"],
        }


async def test_queue_settings_reach_ws_and_sse_subscribers_of_queues(stack: Stack) -> None:
    admin = await stack.user(f"a{uuid.uuid4().hex[:10]}", role="admin")
    headers = {"Authorization": f"Bearer {admin}"}
    since = await latest_revision(stack.db)
    async with ws_connect(stack.server, admin) as ws, httpx.AsyncClient(timeout=10) as client:
        await connected(ws)
        assert (await subscribe(ws, ["queues"], since=since))["type"] == "subscribed"
        url = f"{stack.server.url}/api/v1/queues/deploys"
        paused = await client.patch(url, json={"paused": True}, headers=headers)
        assert paused.status_code == 200, paused.text
        changes = await collect_changes(ws, until_revision=await latest_revision(stack.db))
        assert [(c["collection"], c["op"], c["id"], c["data"]) for c in changes] == [
            ("queues", "update", "deploys", paused.json())
        ]
        events = await first_events(
            client,
            f"{stack.server.url}/api/v1/changes?collections=queues&since={since}",
            headers,
            2,
        )
        assert orjson.loads(events[1]["data"])["data"] == paused.json()
