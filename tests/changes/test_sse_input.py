"""Numbers in the SSE feed's header and query: anything but a revision is a 422, never a 500."""

from __future__ import annotations

import asyncio

import httpx

from orchestrator.services import Services
from tests.support.users import account, admin_auth

NOT_REVISIONS = [
    b"9" * 5000,  # more digits than int() converts
    b"\xb2",  # "²" in Latin-1: str.isdigit() says yes, int() says no
    "\u0661".encode(),  # an Arabic-Indic digit one, as UTF-8
    "\u0661\u0662".encode("utf-16-le"),
    str(2**63).encode(),  # past the largest revision a bigint holds
    b"-1",
    b"1e3",
    b"0x10",
]


async def test_a_last_event_id_or_since_that_is_no_revision_gets_422(
    client: httpx.AsyncClient, services: Services
) -> None:
    auth = [(name.encode(), text.encode()) for name, text in admin_auth(services).items()]
    for value in NOT_REVISIONS:
        async with asyncio.timeout(10):  # a stream (200) would never end
            response = await client.get(
                "/api/v1/changes", headers=[*auth, (b"Last-Event-ID", value)]
            )
        assert response.status_code == 422, (value[:8], response.text)
        error = response.json()["error"]
        assert error["code"] == 422
        assert error["details"][0]["field"] == "Last-Event-ID"
    for since in ["9" * 5000, "\u00b2", "\u0661", str(2**63), "-1"]:
        async with asyncio.timeout(10):
            response = await client.get(
                "/api/v1/changes", params={"since": since}, headers=dict(auth)
            )
        assert response.status_code == 422, (since[:8], response.text)
        assert response.json()["error"]["code"] == 422


async def test_only_admins_may_follow_users_over_sse(
    client: httpx.AsyncClient, services: Services
) -> None:
    member = await account(services, "sse-member")
    async with asyncio.timeout(10):  # a stream (200) would never end
        response = await client.get("/api/v1/changes?collections=jobs,users", headers=member)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == 403
    assert "users" in response.json()["error"]["message"]
