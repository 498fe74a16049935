"""API keys over HTTP: made (shown once), listed (never the secret), revoked, expired, refused for
a disabled user, read-only, and their last use kept to the minute. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from orchestrator.auth import opaque
from orchestrator.auth.users import set_disabled
from orchestrator.db import Database
from orchestrator.db.changelog import latest_revision
from orchestrator.services import Services
from tests.support.users import account, admin_auth

KEYS = "/api/v1/api-keys"


async def make_key(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post(KEYS, json={"name": "worker", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def key_auth(created: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {created['key']}"}


async def heard(services: Services) -> None:
    assert await services.feed.wait_past(await latest_revision(services.db), within=10)


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    if message is not None:
        assert message in error["message"], error


async def test_a_new_key_is_shown_once_with_its_fields(
    client: httpx.AsyncClient, services: Services
) -> None:
    ann = await account(services, "ann")
    before = datetime.now(UTC)
    response = await client.post(KEYS, json={"name": "laptop script"}, headers=ann)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "id",
        "name",
        "username",
        "read_only",
        "created_at",
        "expires_at",
        "last_used_at",
        "prefix",
        "key",
    }
    assert body["name"] == "laptop script"
    assert body["username"] == "ann"
    assert body["read_only"] is False
    assert body["last_used_at"] is None
    created = datetime.fromisoformat(body["created_at"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert before - timedelta(seconds=1) <= created <= datetime.now(UTC)
    assert expires - created == timedelta(days=90)  # the default
    key = body["key"]
    assert key.startswith("orch_")
    assert opaque.is_api_key(key)
    assert len(key) == len("orch_") + 43 + 1 + 6  # 256 random bits, then a checksum
    assert key.startswith(body["prefix"])
    assert len(body["prefix"]) < 20
    # stored only as its hash
    row = await services.db.fetch_one("SELECT * FROM api_keys WHERE id = :id", {"id": body["id"]})
    assert row is not None
    assert row["key_hash"] == opaque.digest(key)
    assert key not in {str(v) for v in dict(row).values()}
    # and it authenticates as its user
    me = await client.get("/api/v1/users/me", headers=key_auth(body))
    assert me.status_code == 200
    assert me.json()["username"] == "ann"


async def test_expiry_is_one_to_730_days(client: httpx.AsyncClient, services: Services) -> None:
    ann = await account(services, "ann")
    for days in (1, 730, 30.0):
        body = await make_key(client, ann, expires_in_days=days)
        span = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(
            body["created_at"]
        )
        assert span == timedelta(days=days)
    for bad in (0, 731, -1, None, "90", 1.5, True):
        response = await client.post(KEYS, json={"name": "x", "expires_in_days": bad}, headers=ann)
        assert_error(response, 422)
    for name in ("", "   ", "x" * 101, None, 5):
        assert_error(await client.post(KEYS, json={"name": name}, headers=ann), 422)
    assert_error(await client.post(KEYS, json={"name": "x", "forever": True}, headers=ann), 422)
    assert_error(await client.post(KEYS, json={}, headers=ann), 422)


async def test_only_admins_make_keys_for_other_users(
    client: httpx.AsyncClient, services: Services
) -> None:
    ann = await account(services, "ann")
    await account(services, "robot", "worker")
    refused = await client.post(KEYS, json={"name": "x", "username": "robot"}, headers=ann)
    assert_error(refused, 403, "admins")
    own = await make_key(client, ann, username="ANN")  # oneself, in any case, is fine
    assert own["username"] == "ann"
    admin = admin_auth(services)
    made = await make_key(client, admin, username="robot", read_only=True)
    assert made["username"] == "robot"
    assert made["read_only"] is True
    me = await client.get("/api/v1/users/me", headers=key_auth(made))
    assert me.json() == {**me.json(), "username": "robot", "role": "worker"}
    missing = await client.post(KEYS, json={"name": "x", "username": "nobody"}, headers=admin)
    assert_error(missing, 404, "nobody")
    assert_error(await client.post(KEYS, json={"name": "x"}), 401)


async def test_listing_shows_the_callers_keys_admins_everyones_and_never_a_secret(
    client: httpx.AsyncClient, services: Services
) -> None:
    ann = await account(services, "ann")
    bob = await account(services, "bob")
    admin = admin_auth(services)
    ann_key = await make_key(client, ann, name="a")
    bob_key = await make_key(client, bob, name="b")
    admin_key = await make_key(client, admin, name="c")

    def ids(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        text = response.text
        for secret in (ann_key["key"], bob_key["key"], admin_key["key"]):
            assert secret not in text
        keys = response.json()["api_keys"]
        assert all("key" not in k for k in keys)
        return {k["id"] for k in keys}

    assert ids(await client.get(KEYS, headers=ann)) == {ann_key["id"]}
    assert ids(await client.get(KEYS, headers=bob)) == {bob_key["id"]}
    everyone = {ann_key["id"], bob_key["id"], admin_key["id"]}
    assert ids(await client.get(KEYS, headers=admin)) == everyone
    assert ids(await client.get(KEYS, params={"username": "bob"}, headers=admin)) == {bob_key["id"]}
    assert ids(await client.get(KEYS, params={"username": "ann"}, headers=ann)) == {ann_key["id"]}
    listed = (await client.get(KEYS, headers=ann)).json()["api_keys"][0]
    assert listed == {k: v for k, v in ann_key.items() if k != "key"}
    assert_error(await client.get(KEYS, params={"username": "bob"}, headers=ann), 403)
    assert_error(await client.get(KEYS, params={"username": "nobody"}, headers=admin), 404)
    assert_error(await client.get(KEYS, params={"user": "bob"}, headers=admin), 422)
    assert_error(await client.get(KEYS), 401)


async def test_a_revoked_key_is_refused_and_only_its_owner_or_an_admin_revokes_it(
    client: httpx.AsyncClient, services: Services
) -> None:
    ann = await account(services, "ann")
    bob = await account(services, "bob")
    admin = admin_auth(services)
    ann_key = await make_key(client, ann)
    bob_key = await make_key(client, bob)
    assert (await client.get("/api/v1/users/me", headers=key_auth(ann_key))).status_code == 200
    # someone else's key is as good as none
    assert_error(await client.delete(f"{KEYS}/{bob_key['id']}", headers=ann), 404)
    response = await client.delete(f"{KEYS}/{ann_key['id']}", headers=ann)
    assert response.status_code == 204
    assert response.content == b""
    refused = await client.get("/api/v1/users/me", headers=key_auth(ann_key))
    assert_error(refused, 401, "Invalid API key")
    assert_error(await client.delete(f"{KEYS}/{ann_key['id']}", headers=ann), 404)
    assert (await client.get(KEYS, headers=ann)).json() == {"api_keys": []}
    assert (await client.delete(f"{KEYS}/{bob_key['id']}", headers=admin)).status_code == 204
    assert_error(await client.get("/api/v1/users/me", headers=key_auth(bob_key)), 401)
    # a key may revoke itself
    own = await make_key(client, ann)
    assert (await client.delete(f"{KEYS}/{own['id']}", headers=key_auth(own))).status_code == 204
    assert_error(await client.get("/api/v1/users/me", headers=key_auth(own)), 401)
    await heard(services)  # the change log's word does not bring it back
    assert_error(await client.get("/api/v1/users/me", headers=key_auth(own)), 401)


async def expire(db: Database, key_id: str) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE api_keys SET expires_at = :at WHERE id = :id",
            {"at": datetime.now(UTC) - timedelta(seconds=1), "id": key_id},
        )


async def test_an_expired_key_and_a_disabled_users_key_get_401(
    client: httpx.AsyncClient, services: Services
) -> None:
    ann = await account(services, "ann")
    await account(services, "bob")
    admin = admin_auth(services)
    old = await make_key(client, ann)
    assert (await client.get("/api/v1/users/me", headers=key_auth(old))).status_code == 200
    await expire(services.db, old["id"])
    services.api_keys.forget()  # what the change log would do for a revocation
    assert_error(await client.get("/api/v1/users/me", headers=key_auth(old)), 401, "expired")

    bobs = await make_key(client, admin, username="bob")
    assert (await client.get("/api/v1/users/me", headers=key_auth(bobs))).status_code == 200
    await set_disabled(services.db, username="bob", disabled=True)
    await heard(services)
    assert_error(await client.get("/api/v1/users/me", headers=key_auth(bobs)), 401)
    await set_disabled(services.db, username="bob", disabled=False)
    await heard(services)
    assert (await client.get("/api/v1/users/me", headers=key_auth(bobs))).status_code == 200


async def test_a_read_only_key_reads_and_gets_403_on_every_other_method(
    client: httpx.AsyncClient, services: Services
) -> None:
    ann = await account(services, "ann")
    reader = key_auth(await make_key(client, ann, read_only=True))
    writer = key_auth(await make_key(client, ann))
    task = await client.post("/api/v1/collab/tasks", json={"title": "t"}, headers=writer)
    assert task.status_code == 201, task.text
    one = f"/api/v1/collab/tasks/{task.json()['id']}"
    assert (await client.get(one, headers=reader)).status_code == 200
    assert (await client.head(one, headers=reader)).status_code == 200
    assert (await client.get("/api/v1/jobs", headers=reader)).status_code == 200
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/collab/tasks", {"json": {"title": "x"}}),
        ("PATCH", one, {"json": {"title": "y"}, "headers": {"If-Match": "*"}}),
        ("DELETE", one, {"headers": {"If-Match": "*"}}),
        ("POST", KEYS, {"json": {"name": "more"}}),
        ("POST", "/api/v1/jobs", {"json": {"title": "j"}}),
        ("POST", "/api/v1/users/me/password", {"json": {"current_password": "x" * 8}}),
    ]
    for method, url, options in attempts:
        options["headers"] = {**reader, **options.get("headers", {})}
        assert_error(await client.request(method, url, **options), 403, "read-only")
    assert (await client.get(one, headers=reader)).json()["title"] == "t"


async def test_last_use_is_kept_to_the_minute_with_one_write_per_minute(
    client: httpx.AsyncClient, services: Services, backend: str
) -> None:
    ann = await account(services, "ann")
    created = await make_key(client, ann)
    db = services.db
    # Count the updates the table sees, in the database itself.
    async with db.transaction() as tx:
        await tx.execute("CREATE TABLE key_writes (n INTEGER NOT NULL)")
        await tx.execute("INSERT INTO key_writes (n) VALUES (0)")
        if backend == "sqlite":
            await tx.execute(
                "CREATE TRIGGER count_key_writes AFTER UPDATE ON api_keys "
                "BEGIN UPDATE key_writes SET n = n + 1; END"
            )
        else:
            await tx.execute(
                "CREATE FUNCTION count_key_writes() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN UPDATE key_writes SET n = n + 1; RETURN NULL; END $$"
            )
            await tx.execute(
                "CREATE TRIGGER count_key_writes AFTER UPDATE ON api_keys "
                "FOR EACH ROW EXECUTE FUNCTION count_key_writes()"
            )
    started = datetime.now(UTC)
    for _ in range(30):
        response = await client.get("/api/v1/users/me", headers=key_auth(created))
        assert response.status_code == 200
    (listed,) = (await client.get(KEYS, headers=ann)).json()["api_keys"]
    ended = datetime.now(UTC)
    last_used = datetime.fromisoformat(listed["last_used_at"])
    assert last_used.second == 0
    assert last_used.microsecond == 0
    assert started.replace(second=0, microsecond=0) <= last_used <= ended
    row = await db.fetch_one("SELECT n FROM key_writes")
    assert row is not None
    minutes = ended.replace(second=0, microsecond=0) - started.replace(second=0, microsecond=0)
    assert 1 <= row["n"] <= 1 + minutes // timedelta(minutes=1)


@pytest.mark.parametrize(
    "credential",
    [
        "orch_",
        "orch_garbage",
        "orch_" + "A" * 43 + "_AAAAAA",  # a wrong checksum
        "orch_" + "A" * 43 + "_" + opaque.checksum("A" * 43) + "x",
        "orch_" + "A" * 5000,
        "ort_" + "A" * 43,  # a refresh token is no bearer credential
        "ors_" + "A" * 43,  # nor a browser-session token
        "orch_\u00e9" + "A" * 42 + "_AAAAAA",
    ],
)
async def test_malformed_keys_get_401_in_the_envelope(
    client: httpx.AsyncClient, credential: str
) -> None:
    response = await client.get(
        "/api/v1/users/me", headers={b"Authorization": f"Bearer {credential}".encode()}
    )
    assert_error(response, 401)


async def test_a_well_formed_unknown_key_gets_401_and_a_key_is_no_refresh_token(
    client: httpx.AsyncClient, services: Services
) -> None:
    unknown = opaque.new_api_key()
    assert_error(
        await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {unknown}"}),
        401,
        "Invalid API key",
    )
    ann = await account(services, "ann")
    real = (await make_key(client, ann))["key"]
    assert_error(await client.post("/auth/refresh", json={"refresh_token": real}), 401)
    assert_error(
        await client.get("/api/v1/users/me", headers={"Cookie": f"orch_session={real}"}), 401
    )
