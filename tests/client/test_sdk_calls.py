"""The SDK's calls against the app in process: every route, If-Match edits, errors it raises."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.auth.api_keys import create_api_key
from orchestrator.auth.users import get_user
from orchestrator.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    NextJobs,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
)
from orchestrator.db.migrate import upgrade
from orchestrator.services import Services
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD, PASSWORD, make_user

# The same operation under a second path: the SDK calls the first.
ALIASES = {
    "/api/v1/health": "/health",
    "/api/v1/healthz": "/healthz",
    "/api/v1/auth/login": "/auth/login",
}
# The change feed as Server-Sent Events is for browsers; the SDK follows the same feed over
# the WebSocket (`subscribe()`).
FOLLOWED_OVER_WEBSOCKET = {("GET", "/api/v1/changes")}
# Browser sign-in: it answers with cookies, which only a browser keeps.
FOR_BROWSERS = {("POST", "/auth/session")}


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    """SQLite only: what is tested here is the client, not the database."""
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    await asyncio.to_thread(upgrade, url)
    return url


def _sdk(app: FastAPI) -> AsyncClient:
    return AsyncClient("http://127.0.0.1", transport=httpx.ASGITransport(app=app))


class _Recorder(httpx.AsyncBaseTransport):
    """The app's transport, noting each request's method and path."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.sent: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        return await self.inner.handle_async_request(request)


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    paths: dict[str, dict[str, Any]] = document["paths"]
    return {
        (method.upper(), ALIASES.get(path, path))
        for path, operations in paths.items()
        for method in operations
    }


def _template_of(path: str, templates: set[str]) -> str | None:
    if path in templates:  # /api/v1/jobs/claim before /api/v1/jobs/{job_id}
        return path
    for template in templates:
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    return None


async def test_every_operation_of_the_openapi_document_is_a_method_of_both_clients(
    app: FastAPI,
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as raw:
        operations = _operations((await raw.get("/openapi.json")).json())
    operations -= FOLLOWED_OVER_WEBSOCKET | FOR_BROWSERS
    recorder = _Recorder(app)
    async with AsyncClient("http://127.0.0.1", transport=recorder) as sdk:
        await sdk.health()
        await sdk.ready()
        await sdk.login("admin", ADMIN_PASSWORD)
        assert (await sdk.me())["username"] == "admin"
        assert sdk.refresh_token is not None
        await sdk.refresh(sdk.refresh_token)
        sessions = (await sdk.list_sessions())["sessions"]
        assert [s["current"] for s in sessions] == [True]
        assert (await sdk.list_sessions(username="admin"))["sessions"] == sessions
        await sdk.login("admin", ADMIN_PASSWORD)  # a second session, to end through the API
        await sdk.end_session(sessions[0]["id"], username="admin")
        assert "admin" in {u["username"] for u in (await sdk.list_users())["users"]}
        ada = await sdk.create_user("ada", "correct horse battery", role="viewer")
        assert (ada["username"], ada["role"]) == ("ada", "viewer")
        assert (await sdk.update_user("ada", role="member", disabled=True))["disabled"] is True
        await sdk.end_user_sessions("ada")
        made = await sdk.create_api_key("ci", read_only=True, expires_in_days=7, username="ada")
        assert made["key"]
        assert made["read_only"] is True
        listed = (await sdk.list_api_keys(username="ada"))["api_keys"]
        assert [k["id"] for k in listed] == [made["id"]]
        assert "key" not in listed[0]
        await sdk.revoke_api_key(made["id"])
        await sdk.change_password(ADMIN_PASSWORD, "a new and long admin password")
        sdk.token = sdk.refresh_token = None  # the next call logs in with the new password
        assert (await sdk.me())["username"] == "admin"
        assert "orch_http_requests_total" in await sdk.metrics()
        job = await sdk.create_job("j", queue="q", payload={"n": 1}, idempotency_key="k-1")
        assert await sdk.get_job(job["id"]) == job
        assert [j["id"] for j in (await sdk.list_jobs(status="pending"))["jobs"]] == [job["id"]]
        assert (await sdk.list_jobs(queue="elsewhere"))["jobs"] == []
        assert (await sdk.list_jobs(queue="q", search="J", order="desc"))["jobs"] == [job]
        claimed = await sdk.claim(["q"], lease_seconds=10)
        assert claimed is not None
        await sdk.heartbeat(claimed.id, claimed.token)
        [line] = await sdk.append_job_logs(claimed.id, claimed.token, ["working"])
        assert (await sdk.list_job_logs(job["id"], after=0, limit=10))["items"] == [line]
        await sdk.fail(claimed.id, claimed.token, "again", retry=True)
        await sdk.cancel_job(job["id"])
        assert (await sdk.retry_job(job["id"]))["status"] == "pending"
        assert await sdk.bulk("cancel", ids=[job["id"]]) == {"matched": 1, "changed": 1}
        assert await sdk.bulk("retry", status="cancelled", queue="q") == {
            "matched": 1,
            "changed": 1,
        }
        await sdk.cancel_job(job["id"])
        put_off = await sdk.retry_job(job["id"], delay=timedelta(minutes=5))
        assert put_off["run_at"] is not None
        await sdk.cancel_job(job["id"])
        later = await sdk.create_job("l", queue="q", delay=timedelta(hours=1), unique_key="u")
        assert later["run_at"] is not None
        assert (await sdk.create_job("m", queue="q", unique_key="u"))["id"] == later["id"]
        assert (await sdk.list_jobs(status="pending", scheduled=True))["jobs"] == [later]
        second = await sdk.create_job("k", queue="r")
        claimed = await sdk.claim(["r"])
        assert claimed is not None
        await sdk.release(claimed.id, claimed.token)
        claimed = await sdk.claim(["r"])
        assert claimed is not None
        await sdk.complete(claimed.id, claimed.token, {"ok": True})
        await sdk.delete_job(second["id"])
        for n in range(3):
            await sdk.create_job(f"batch {n}", queue="b")
        batch = await sdk.claim_jobs(["b"], max_jobs=2)
        assert [b["code"] for b in await sdk.heartbeat_jobs(batch)] == [200, 200]
        reported = await sdk.report(
            complete=[(batch[0], 1)], fail=[(batch[1], "no", False)], claim=NextJobs(["b"], 5)
        )
        assert [o["job"]["status"] for o in (*reported.complete, *reported.fail)] == [
            "succeeded",
            "failed",
        ]
        assert len(reported.claims) == 1
        await sdk.report(release=reported.claims)
        task = await sdk.create_task("t", description="d")
        assert (await sdk.get_task(task["id"]))["title"] == "t"
        assert [t["id"] for t in (await sdk.list_tasks(limit=10))["items"]] == [task["id"]]
        await sdk.update_task(task["id"], title="u")
        await sdk.delete_task(task["id"])
        schedule = await sdk.create_schedule(
            "nightly", "30 2 * * *", {"title": "report"}, timezone="Europe/Paris"
        )
        assert schedule["next_run_at"] is not None
        assert await sdk.get_schedule(schedule["id"]) == schedule
        assert (await sdk.list_schedules(limit=5))["schedules"] == [schedule]
        paused = await sdk.update_schedule(schedule["id"], enabled=False)
        assert (paused["enabled"], paused["next_run_at"]) == (False, None)
        await sdk.delete_schedule(schedule["id"])
        queue = await sdk.update_queue("deploys-eu", paused=True, max_running=2)
        assert (queue["name"], queue["paused"], queue["max_running"]) == ("deploys-eu", True, 2)
        assert await sdk.get_queue("deploys-eu") == queue
        assert queue in (await sdk.list_queues())["items"]
        resumed = await sdk.update_queue("deploys-eu", paused=False)
        assert (resumed["paused"], resumed["max_running"]) == (False, 2)
        assert (await sdk.update_queue("deploys-eu", max_running=None))["max_running"] is None
        await sdk.logout()
        assert sdk.token is None

    templates = {path for _method, path in operations}
    called = set()
    for method, path in recorder.sent:
        template = _template_of(path, templates)
        if template is not None:
            called.add((method, template))
    assert operations - called == set(), "operations the SDK has no method for"
    blocking = {name for name in dir(Client) if not name.startswith("_")}
    awaiting = {name for name in dir(AsyncClient) if not name.startswith("_")}
    assert blocking - {"close"} == awaiting - {"aclose"}


async def test_an_expired_token_is_renewed_with_the_refresh_token_before_the_password(
    app: FastAPI,
) -> None:
    recorder = _Recorder(app)
    async with AsyncClient("http://127.0.0.1", transport=recorder) as sdk:
        await sdk.login("admin", ADMIN_PASSWORD)
        first_refresh = sdk.refresh_token
        sdk.token = "expired"  # as an expired token would be refused
        assert (await sdk.me())["username"] == "admin"
        assert recorder.sent[-3:] == [
            ("GET", "/api/v1/users/me"),
            ("POST", "/auth/refresh"),
            ("GET", "/api/v1/users/me"),
        ]
        assert sdk.refresh_token not in (None, first_refresh)
        # a session ended elsewhere: the refresh token is refused, the password logs in again
        sessions = (await sdk.list_sessions())["sessions"]
        async with _sdk(app) as other:
            await other.login("admin", ADMIN_PASSWORD)
            await other.end_session(sessions[0]["id"])
        sdk.token = "expired"
        assert (await sdk.me())["username"] == "admin"
        assert [path for _method, path in recorder.sent[-4:]] == [
            "/api/v1/users/me",
            "/auth/refresh",
            "/auth/login",
            "/api/v1/users/me",
        ]


async def test_tasks_are_edited_and_deleted_at_the_version_last_seen(app: FastAPI) -> None:
    async with _sdk(app) as alice, _sdk(app) as bob:
        await alice.login("admin", ADMIN_PASSWORD)
        await bob.login("admin", ADMIN_PASSWORD)
        task = await alice.create_task("draft")
        # alice created it, so she knows its version: the edit is sent with If-Match.
        edited = await alice.update_task(task["id"], title="first edit")
        assert edited["title"] == "first edit"
        with pytest.raises(ValueError, match="read it first"):
            await bob.update_task(task["id"], title="blind")  # bob has never seen it
        await bob.get_task(task["id"])
        await bob.update_task(task["id"], description=None)
        with pytest.raises(PreconditionFailedError) as stale:
            await alice.update_task(task["id"], title="lost update")
        assert stale.value.status_code == 412
        assert stale.value.etag is not None
        assert (await alice.get_task(task["id"]))["description"] is None  # re-read: the new one
        with pytest.raises(PreconditionFailedError):
            await bob.delete_task(task["id"], if_match='"not-the-tag"')
        renamed = await alice.update_task(task["id"], title="second edit")
        assert renamed["title"] == "second edit"
        await alice.delete_task(task["id"], if_match="*")


async def test_job_delete_honours_if_match(app: FastAPI) -> None:
    async with _sdk(app) as sdk:
        await sdk.login("admin", ADMIN_PASSWORD)
        job = await sdk.create_job("to delete")
        with pytest.raises(PreconditionFailedError):
            await sdk.delete_job(job["id"], if_match='"stale"')
        etag = sdk.etag(f"/api/v1/jobs/{job['id']}")
        assert etag is not None
        await sdk.delete_job(job["id"], if_match=etag)


async def test_refusals_are_typed_and_carry_retry_after(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url, tmp_path / "data", rate_limit_enabled=True, rate_limit_login="2/minute"
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application), _sdk(application) as sdk:
        services: Services = application.state.services
        await make_user(services.db, "viewer", "viewer")
        await sdk.login("viewer", PASSWORD)
        with pytest.raises(PermissionDeniedError):
            await sdk.claim(["q"])
        with pytest.raises(AuthenticationError):
            await sdk.login("viewer", "wrong password")
        with pytest.raises(RateLimitedError) as limited:
            await sdk.login("viewer", "wrong password")
        assert limited.value.transient
        assert limited.value.retry_after is not None
        assert limited.value.retry_after > 0


async def test_an_api_key_stands_for_its_user_without_a_login(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    services: Services = app.state.services
    await make_user(services.db, "robot", "worker")
    robot = await get_user(services.db, username="robot")
    assert robot is not None
    _key, secret = await create_api_key(
        services.db, user_id=robot.id, username="robot", name="ci", read_only=False,
        expires_in_days=1,
    )  # fmt: skip
    async with AsyncClient(
        "http://127.0.0.1", api_key=secret, transport=httpx.ASGITransport(app=app)
    ) as sdk:
        assert (await sdk.me())["username"] == "robot"
        assert await sdk.claim(["q"]) is None
    monkeypatch.setenv("ORCH_API_KEY", secret)
    async with _sdk(app) as from_environment:
        assert (await from_environment.me())["username"] == "robot"
    monkeypatch.setenv("ORCH_API_KEY", "orch_" + "x" * 43 + "_abcdef")
    async with _sdk(app) as refused:
        with pytest.raises(AuthenticationError):
            await refused.me()
