"""Accounts over HTTP: admins create users, change roles, disable and end sessions; everyone
changes their own password. The CLI's rules and messages; each in the change log, no hashes.
On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.services import Services
from tests.support.users import PASSWORD, account, admin_auth, login, make_user

USERS = "/api/v1/users"


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    if message is not None:
        assert message in error["message"], error


async def user_changes(services: Services, since: int) -> list[dict[str, Any]]:
    changes = await changes_after(services.db, revision=since)
    return [
        {"op": c.op, "id": c.resource_id, "data": c.data or ""}
        for c in changes
        if c.collection == "users"
    ]


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(body: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['access_token']}"}


async def test_admins_create_users_who_then_sign_in(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    since = await latest_revision(services.db)
    response = await client.post(
        USERS,
        json={"username": "Carol", "role": "viewer", "password": "carol-pass-1"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "username", "role", "disabled", "created_at"}
    assert body["username"] == "Carol"
    assert body["role"] == "viewer"
    assert body["disabled"] is False
    token = await sign_in(client, "carol", "carol-pass-1")
    me = await client.get(f"{USERS}/me", headers=bearer(token))
    assert me.json() == body
    (change,) = await user_changes(services, since)
    assert change["op"] == "create"
    assert change["id"] == body["id"]
    assert "carol-pass-1" not in change["data"]
    assert "argon2" not in change["data"]
    # the role defaults to member, as in the CLI
    made = await client.post(USERS, json={"username": "dan", "password": "x" * 8}, headers=admin)
    assert made.json()["role"] == "member"


async def test_creating_a_user_follows_the_clis_rules_and_messages(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    await client.post(USERS, json={"username": "erin", "password": "x" * 8}, headers=admin)
    duplicate = await client.post(
        USERS, json={"username": "ERIN", "password": "y" * 8}, headers=admin
    )
    assert_error(duplicate, 409, "User 'ERIN' already exists")
    short = await client.post(USERS, json={"username": "fay", "password": "short"}, headers=admin)
    assert_error(short, 422, "Invalid user")
    assert {"field": "password", "reason": "8 to 1024 characters"} in short.json()["error"][
        "details"
    ]
    for name in ("", "a b", "-lead", "x" * 151, "trailing\n", "ünï"):
        bad = await client.post(USERS, json={"username": name, "password": "x" * 8}, headers=admin)
        assert_error(bad, 422)
    for role in ("root", None, 1):
        with_role = {"username": "gus", "password": "x" * 8, "role": role}
        assert_error(await client.post(USERS, json=with_role, headers=admin), 422)
    bodies: tuple[dict[str, object], ...] = (
        {"username": "gus"},
        {"password": "x" * 8},
        {"username": "gus", "password": 12345678},
    )
    for body in bodies:
        assert_error(await client.post(USERS, json=body, headers=admin), 422)
    long = {"username": "gus", "password": "x" * 1025}
    assert_error(await client.post(USERS, json=long, headers=admin), 422)
    extra = {"username": "gus", "password": "x" * 8, "password_hash": "$argon2id$"}
    assert_error(await client.post(USERS, json=extra, headers=admin), 422)
    surrogate = b'{"username": "gus", "password": "\\ud800\\ud800\\ud800\\ud800\\ud800xxx"}'
    response = await client.post(
        USERS, content=surrogate, headers={**admin, "Content-Type": "application/json"}
    )
    assert response.status_code in (201, 422), response.text


async def test_only_admins_manage_accounts(client: httpx.AsyncClient, services: Services) -> None:
    member = await account(services, "ann")
    await make_user(services.db, "bob", password=None)
    body = {"username": "x1", "password": "x" * 8}
    assert_error(await client.post(USERS, json=body, headers=member), 403)
    assert_error(await client.patch(f"{USERS}/bob", json={"role": "viewer"}, headers=member), 403)
    assert_error(await client.delete(f"{USERS}/bob/sessions", headers=member), 403)
    assert_error(await client.post(USERS, json=body), 401)
    assert_error(await client.patch(f"{USERS}/bob", json={"disabled": True}), 401)
    assert_error(await client.delete(f"{USERS}/bob/sessions"), 401)


async def test_admins_change_roles_and_disable_users(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    await make_user(services.db, "bob")
    bob = await sign_in(client, "bob", PASSWORD)
    since = await latest_revision(services.db)

    response = await client.patch(f"{USERS}/BOB", json={"role": "viewer"}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "viewer"
    assert response.json()["username"] == "bob"
    # a new role takes effect at once; the token stays valid
    write = await client.post("/api/v1/collab/tasks", json={"title": "t"}, headers=bearer(bob))
    assert_error(write, 403)
    assert (await client.get(f"{USERS}/me", headers=bearer(bob))).json()["role"] == "viewer"

    response = await client.patch(f"{USERS}/bob", json={"disabled": True}, headers=admin)
    assert response.status_code == 200
    assert response.json()["disabled"] is True
    assert_error(await client.get(f"{USERS}/me", headers=bearer(bob)), 401)
    assert_error(
        await client.post("/auth/refresh", json={"refresh_token": bob["refresh_token"]}), 401
    )
    refused = await client.post("/auth/login", json={"username": "bob", "password": PASSWORD})
    assert_error(refused, 401)

    both = await client.patch(
        f"{USERS}/bob", json={"disabled": False, "role": "member"}, headers=admin
    )
    assert both.json() == {**both.json(), "disabled": False, "role": "member"}
    assert_error(await client.get(f"{USERS}/me", headers=bearer(bob)), 401)  # ended for good
    await sign_in(client, "bob", PASSWORD)
    unchanged = await client.patch(f"{USERS}/bob", json={}, headers=admin)
    assert unchanged.json() == both.json()

    changes = await user_changes(services, since)
    assert [c["op"] for c in changes] == ["update", "update", "update"]
    for change in changes:
        assert "argon2" not in change["data"]
    assert '"role":"viewer"' in changes[0]["data"]

    assert_error(await client.patch(f"{USERS}/nobody", json={"role": "viewer"}, headers=admin), 404)
    for bad in ({"role": "root"}, {"disabled": "yes"}, {"password": "x" * 8}):
        assert_error(await client.patch(f"{USERS}/bob", json=bad, headers=admin), 422)


async def test_an_admin_may_not_lock_themselves_out(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    for body in ({"disabled": True}, {"role": "member"}):
        assert_error(await client.patch(f"{USERS}/admin", json=body, headers=admin), 409)
    assert (
        await client.patch(f"{USERS}/admin", json={"role": "admin"}, headers=admin)
    ).status_code == 200
    assert (await client.get(f"{USERS}/me", headers=admin)).json()["role"] == "admin"


async def test_admins_end_every_session_of_a_user(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    await make_user(services.db, "bob")
    first = await sign_in(client, "bob", PASSWORD)
    second = await sign_in(client, "bob", PASSWORD)
    key = await client.post("/api/v1/api-keys", json={"name": "k"}, headers=bearer(first))
    since = await latest_revision(services.db)
    response = await client.delete(f"{USERS}/Bob/sessions", headers=admin)
    assert response.status_code == 204
    assert response.content == b""
    for body in (first, second):
        assert_error(await client.get(f"{USERS}/me", headers=bearer(body)), 401)
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
        assert_error(refreshed, 401)
    # an API key is no session: it is revoked on its own
    with_key = await client.get(
        f"{USERS}/me", headers={"Authorization": f"Bearer {key.json()['key']}"}
    )
    assert with_key.status_code == 200
    (change,) = await user_changes(services, since)
    assert change["op"] == "update"
    # a new sign-in works
    assert (
        await client.get(f"{USERS}/me", headers=bearer(await sign_in(client, "bob", PASSWORD)))
    ).status_code == 200
    assert_error(await client.delete(f"{USERS}/nobody/sessions", headers=admin), 404)


async def test_everyone_changes_their_own_password_and_their_other_sessions_end(
    client: httpx.AsyncClient, services: Services
) -> None:
    await make_user(services.db, "vic", "viewer")
    here = await sign_in(client, "vic", PASSWORD)
    elsewhere = await sign_in(client, "vic", PASSWORD)
    since = await latest_revision(services.db)
    url = f"{USERS}/me/password"
    body = {"current_password": PASSWORD, "new_password": "a new password"}
    response = await client.post(url, json=body, headers=bearer(here))
    assert response.status_code == 204, response.text
    # this session goes on; the other one is over
    assert (await client.get(f"{USERS}/me", headers=bearer(here))).status_code == 200
    refreshed = await client.post("/auth/refresh", json={"refresh_token": here["refresh_token"]})
    assert refreshed.status_code == 200
    assert_error(await client.get(f"{USERS}/me", headers=bearer(elsewhere)), 401)
    refused = await client.post("/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]})
    assert_error(refused, 401)
    assert_error(
        await client.post("/auth/login", json={"username": "vic", "password": PASSWORD}), 401
    )
    await sign_in(client, "vic", "a new password")
    (change,) = await user_changes(services, since)
    assert change["op"] == "update"
    assert "argon2" not in change["data"]
    assert "a new password" not in change["data"]


async def test_a_password_change_needs_the_current_password_and_a_valid_new_one(
    client: httpx.AsyncClient, services: Services
) -> None:
    await make_user(services.db, "vic")
    headers = await login(client, "vic")
    url = f"{USERS}/me/password"
    wrong = {"current_password": "not the password", "new_password": "a new password"}
    assert_error(await client.post(url, json=wrong, headers=headers), 403, "Wrong current password")
    weak = await client.post(
        url, json={"current_password": PASSWORD, "new_password": "short"}, headers=headers
    )
    assert_error(weak, 422, "Invalid password")
    assert weak.json()["error"]["details"] == [
        {"field": "new_password", "reason": "8 to 1024 characters"}
    ]
    for bad in (
        {"current_password": PASSWORD},
        {"new_password": "a new password"},
        {"current_password": "", "new_password": "a new password"},
        {"current_password": "x" * 1025, "new_password": "a new password"},
        {"current_password": PASSWORD, "new_password": "x" * 1025},
        {"current_password": PASSWORD, "new_password": "a new password", "username": "admin"},
    ):
        assert_error(await client.post(url, json=bad, headers=headers), 422)
    assert_error(
        await client.post(url, json={"current_password": PASSWORD, "new_password": "x" * 9}), 401
    )
    # still the old password
    await login(client, "vic")
