"""Claims and leases over HTTP, as the worker tests make and read them."""

from __future__ import annotations

from typing import Any

import httpx

from orchestrator.services import Services

Headers = dict[str, str]


async def claim(client: httpx.AsyncClient, headers: Headers, **body: Any) -> httpx.Response:
    body.setdefault("queues", ["default"])
    return await client.post("/api/v1/jobs/claim", json=body, headers=headers)


async def claimed(client: httpx.AsyncClient, headers: Headers, **body: Any) -> dict[str, Any]:
    response = await claim(client, headers, **body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def held(answer: dict[str, Any]) -> dict[str, Any]:
    """The lease of a claim's answer as lease calls send it: its token and its secret."""
    return {"token": answer["lease"]["token"], "secret": answer["lease"]["secret"]}


def forged(services: Services, job_id: str, token: int) -> dict[str, Any]:
    """A lease of `token` with the secret the service would give it: tests of the fence
    itself, apart from the secret."""
    return {"token": token, "secret": services.lease_keys.secret(job_id, token)}


async def job_row(services: Services, job_id: str) -> dict[str, Any]:
    row = await services.db.fetch_one(
        "SELECT status, attempts, result, error, lease_token, cancel_requested, version "
        "FROM jobs WHERE id = :id",
        {"id": job_id},
    )
    assert row is not None
    return dict(row)
