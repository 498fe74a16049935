"""`/ws` as the contract says, seen from a real WebSocket client against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from orchestrator.auth.users import set_disabled, set_role
from orchestrator.db.changelog import latest_revision, prune_changes
from tests.changes.support import (
    Stack,
    close_code,
    connected,
    mint_token,
    recv_json,
    send_json,
    subscribe,
    until,
    ws_connect,
)

pytestmark = pytest.mark.e2e


def username() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("header", [False, True], ids=["query", "authorization-header"])
async def test_first_frame_is_the_connection_message(stack: Stack, header: bool) -> None:
    name = username()
    token = await stack.user(name)
    async with ws_connect(stack.server, token, header=header) as ws:
        first = await recv_json(ws)
    assert first["type"] == "connection"
    assert first["status"] == "connected"
    assert first["user"] == name
    assert first["timestamp"].startswith("20")


async def test_json_messages_are_echoed_with_metadata(stack: Stack) -> None:
    name = username()
    async with ws_connect(stack.server, await stack.user(name)) as ws:
        await connected(ws)
        await send_json(ws, {"type": "chat", "text": "hello", "n": [1, 2]})
        echo = await recv_json(ws)
    assert echo["type"] == "message"
    assert echo["data"] == {"type": "chat", "text": "hello", "n": [1, 2]}
    assert echo["user"] == name
    assert isinstance(echo["timestamp"], str)


@pytest.mark.parametrize(
    ("make_token", "why"),
    [
        (lambda: None, "missing"),
        (lambda: "not-a-jwt", "garbage"),
        (lambda: mint_token("admin", lifetime=-60), "expired"),
        (lambda: mint_token("admin", iss="someone-else"), "wrong issuer"),
        (lambda: mint_token("nobody-by-this-name"), "unknown user"),
    ],
)
async def test_bad_token_is_accepted_then_closed_1008_with_no_frame(
    stack: Stack, make_token: object, why: str
) -> None:
    assert callable(make_token)
    async with ws_connect(stack.server, make_token()) as ws:
        code, frames = await close_code(ws)
    assert code == 1008, why
    assert frames == [], why


async def test_bad_token_in_header_is_closed_1008(stack: Stack) -> None:
    async with ws_connect(stack.server, "bad", header=True) as ws:
        assert await close_code(ws) == (1008, [])


async def test_a_token_offered_as_a_bearer_subprotocol_authenticates(stack: Stack) -> None:
    name = username()
    token = await stack.user(name)
    # As a browser does: its token as a subprotocol, next to the one the server answers.
    async with ws_connect(stack.server, subprotocols=["orchestrator", f"bearer.{token}"]) as ws:
        assert ws.subprotocol == "orchestrator"  # the token does not come back
        first = await recv_json(ws)
    assert first["type"] == "connection"
    assert first["user"] == name
    # Offered alone, it is the one answered: a browser fails a handshake answered with none.
    async with ws_connect(stack.server, subprotocols=[f"bearer.{token}"]) as ws:
        assert ws.subprotocol == f"bearer.{token}"
        assert (await recv_json(ws))["user"] == name
    async with ws_connect(stack.server, subprotocols=["orchestrator", "bearer.not-a-token"]) as ws:
        assert await close_code(ws) == (1008, [])


async def test_disabled_user_is_refused_and_cut_off(stack: Stack) -> None:
    name = username()
    token = await stack.user(name)
    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        await set_disabled(stack.db, username=name, disabled=True)
        # The change to the user reaches the server; the live connection ends with 1008.
        assert (await close_code(ws))[0] == 1008
    async with ws_connect(stack.server, token) as ws:
        assert await close_code(ws) == (1008, [])


async def test_text_that_is_not_a_json_object_gets_an_error_frame(stack: Stack) -> None:
    async with ws_connect(stack.server, await stack.user(username())) as ws:
        await connected(ws)
        for text in ("not json", "[1, 2]", '"just a string"', "42"):
            await ws.send(text)
            error = await recv_json(ws)
            assert error["type"] == "error", text
            assert error["message"]
        await ws.send(b"\x00binary")
        assert (await recv_json(ws))["type"] == "error"
        # Still open: an object is echoed.
        await send_json(ws, {"still": "open"})
        assert (await recv_json(ws))["data"] == {"still": "open"}


async def test_an_object_nested_past_the_limit_gets_an_error_frame(stack: Stack) -> None:
    async with ws_connect(stack.server, await stack.user(username())) as ws:
        await connected(ws)
        for depth in (65, 254, 1000):
            await ws.send('{"a":' * depth + "1" + "}" * depth)
            error = await recv_json(ws)
            assert error["type"] == "error", depth
            assert error["code"] == "invalid_message"
            assert "64" in error["message"]
        fits = orjson.loads('{"a":' * 63 + "1" + "}" * 63)
        await send_json(ws, fits)
        assert (await recv_json(ws))["data"] == fits


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_message_over_64_kib_closes_1009(stack: Stack, compression: str | None) -> None:
    token = await stack.user(username())
    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        just_fits = {"pad": "x" * (64 * 1024 - 20)}
        await send_json(ws, just_fits)
        assert (await recv_json(ws))["data"] == just_fits
    async with ws_connect(stack.server, token, compression=compression) as ws:
        await connected(ws)
        await ws.send(orjson.dumps({"pad": "y" * (64 * 1024)}).decode())
        code, frames = await close_code(ws)
    assert code == 1009
    assert frames == []


async def test_server_error_closes_1011(stack: Stack) -> None:
    async with ws_connect(stack.server, await stack.user(username())) as ws:
        await connected(ws)
        await send_json(ws, {"type": "test.fault"})
        assert (await close_code(ws))[0] == 1011


async def test_token_expiry_closes_1008_at_expiry(stack: Stack) -> None:
    name = username()
    await stack.user(name)
    loop = asyncio.get_running_loop()
    minted = loop.time()
    token = mint_token(name, lifetime=3)
    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        await send_json(ws, {"before": "expiry"})
        assert (await recv_json(ws))["type"] == "message"
        code, _ = await close_code(ws, within=15)
        lived = loop.time() - minted
    assert code == 1008
    assert 2.9 <= lived < 8


async def test_connections_per_user_are_capped(stack: Stack) -> None:
    token = await stack.user(username())
    async with ws_connect(stack.server, token) as a, ws_connect(stack.server, token) as b:
        async with ws_connect(stack.server, token) as c:
            for ws in (a, b, c):
                await connected(ws)
            async with ws_connect(stack.server, token) as over:
                assert await close_code(over) == (1008, [])
        # One left: there is room again, once the server has seen that close (the close
        # handshake completes before the application hears of it: a client retries).

        async def room_again() -> bool:
            try:
                async with ws_connect(stack.server, token) as again:
                    await connected(again)
                    return True
            except ConnectionClosed:
                return False

        await until(room_again, within=10)


async def test_messages_per_second_are_capped(stack: Stack) -> None:
    async with ws_connect(stack.server, await stack.user(username())) as ws:
        await connected(ws)
        with contextlib.suppress(ConnectionClosed):  # the server may close mid-burst
            for n in range(40):
                await send_json(ws, {"n": n})
        code, frames = await close_code(ws)
    assert code == 1008
    assert 1 <= len(frames) < 40


async def test_subscribe_live_gets_changes_after_the_ack(stack: Stack) -> None:
    async with ws_connect(stack.server, await stack.user(username())) as ws:
        await connected(ws)
        ack = await subscribe(ws, ["jobs", "tasks"])
        assert ack["type"] == "subscribed"
        assert ack["collections"] == ["jobs", "tasks"]
        revision = await stack.write_task("live")
        change = await recv_json(ws)
    assert change["type"] == "change"
    assert change["revision"] == revision > ack["revision"]
    assert change["collection"] == "tasks"
    assert change["op"] == "create"
    assert change["data"]["title"] == "live"
    assert change["id"] == change["data"]["id"]


async def test_subscribe_since_replays_then_streams_live(stack: Stack) -> None:
    token = await stack.user(username())
    since = await latest_revision(stack.db)
    written = [await stack.write_task(f"old {n}") for n in range(5)]
    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        ack = await subscribe(ws, ["tasks"], since=since)
        assert ack["type"] == "subscribed"
        assert ack["revision"] >= written[-1]
        replayed = [await recv_json(ws) for _ in written]
        assert [c["revision"] for c in replayed] == written
        assert [c["data"]["title"] for c in replayed] == [f"old {n}" for n in range(5)]
        live = await stack.write_task("new")
        assert (await recv_json(ws))["revision"] == live


async def test_only_admins_follow_the_users_collection(stack: Stack) -> None:
    async with ws_connect(stack.server, await stack.user(username())) as ws:
        await connected(ws)
        await send_json(ws, {"type": "subscribe", "collections": ["jobs", "users"]})
        refused = await recv_json(ws)
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
        ack = await subscribe(ws, ["jobs", "tasks"], since=0)
        assert ack["type"] == "subscribed"
        await stack.user(username())  # a users change
        revision = await stack.write_task("after a user")
        while True:
            frame = await recv_json(ws)
            assert frame["type"] == "change"
            assert frame["collection"] in ("jobs", "tasks")
            if frame["revision"] == revision:
                break


async def test_admins_see_users_change_live_without_hashes_until_demoted(stack: Stack) -> None:
    admin = username()
    async with ws_connect(stack.server, await stack.user(admin, "admin")) as ws:
        await connected(ws)
        assert (await subscribe(ws, ["users"]))["type"] == "subscribed"
        newcomer = username()
        await stack.user(newcomer, "viewer")
        change = await recv_json(ws)
        while change["data"]["username"] != newcomer:  # the admin's own creation may come first
            change = await recv_json(ws)
        assert (change["collection"], change["op"]) == ("users", "create")
        assert change["data"]["role"] == "viewer"
        assert not {"password", "password_hash"} & set(change["data"])
        await set_role(stack.db, username=admin, role="member")
        # no longer an admin: the connection that follows users ends (after the change says so)
        code, frames = await close_code(ws)
        assert code == 1008
        assert [(f["data"]["username"], f["data"]["role"]) for f in frames] == [(admin, "member")]


async def test_invalid_commands_get_error_frames(stack: Stack) -> None:
    async with ws_connect(stack.server, await stack.user(username())) as ws:
        await connected(ws)
        for command in (
            {"type": "subscribe", "collections": "tasks"},
            {"type": "subscribe", "collections": []},
            {"type": "subscribe", "collections": ["tasks"], "since": -1},
            {"type": "subscribe", "collections": ["tasks"], "since": "3"},
            {"type": "subscribe", "collections": ["tasks"], "since": 2**63},  # past a bigint
            {"type": "unsubscribe", "collections": ["nope"]},
        ):
            await send_json(ws, command)
            assert (await recv_json(ws))["type"] == "error", command
        await send_json(ws, {"type": "ping"})
        assert (await recv_json(ws))["type"] == "pong"


async def test_since_older_than_retention_gets_resync_required(stack: Stack) -> None:
    token = await stack.user(username())
    for n in range(3):
        await stack.write_task(f"soon pruned {n}")
    await prune_changes(stack.db, older_than=timedelta(0))
    current = await latest_revision(stack.db)
    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        reply = await subscribe(ws, ["tasks"], since=0)
        assert reply == {"type": "resync_required", "revision": current}
        # A revision from the future is no better.
        reply = await subscribe(ws, ["tasks"], since=current + 1000)
        assert reply["type"] == "resync_required"
        # After reloading, subscribing from the given revision works.
        assert (await subscribe(ws, ["tasks"], since=current))["type"] == "subscribed"
        # A refused resubscription leaves the running one alone.
        assert (await subscribe(ws, ["jobs"], since=0))["type"] == "resync_required"
        revision = await stack.write_task("still streaming")
        assert (await recv_json(ws))["revision"] == revision


async def test_unsubscribe_and_ping(stack: Stack) -> None:
    async with ws_connect(stack.server, await stack.user(username())) as ws:
        await connected(ws)
        await subscribe(ws, ["tasks"])
        await send_json(ws, {"type": "unsubscribe", "collections": ["tasks"]})
        assert await recv_json(ws) == {"type": "unsubscribed", "collections": ["tasks"]}
        revision = await stack.write_task("unseen")
        # pong carries a revision once this process has delivered the write; nothing else comes.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            await send_json(ws, {"type": "ping"})
            pong = await recv_json(ws)
            assert pong["type"] == "pong"
            if pong["revision"] >= revision:
                break
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)


async def test_http_writes_arrive_as_changes_with_the_body_the_api_serves(stack: Stack) -> None:
    token = await stack.user(username())
    headers = {"Authorization": f"Bearer {token}"}
    tasks = f"{stack.server.url}/api/v1/collab/tasks"
    async with ws_connect(stack.server, token) as ws, httpx.AsyncClient(timeout=10) as client:
        await connected(ws)
        assert (await subscribe(ws, ["jobs", "tasks"]))["type"] == "subscribed"
        created = await client.post(tasks, json={"title": "over http"}, headers=headers)
        assert created.status_code == 201
        task = created.json()
        patched = await client.patch(
            f"{tasks}/{task['id']}",
            json={"title": "renamed"},
            headers={**headers, "If-Match": created.headers["etag"]},
        )
        assert patched.status_code == 200
        deleted = await client.delete(
            f"{tasks}/{task['id']}", headers={**headers, "If-Match": patched.headers["etag"]}
        )
        assert deleted.status_code == 204
        job = await client.post(
            f"{stack.server.url}/api/v1/jobs", json={"title": "a job"}, headers=headers
        )
        assert job.status_code == 201
        frames = [await recv_json(ws) for _ in range(4)]
    assert [(f["collection"], f["op"]) for f in frames] == [
        ("tasks", "create"),
        ("tasks", "update"),
        ("tasks", "delete"),
        ("jobs", "create"),
    ]
    revisions = [f["revision"] for f in frames]
    assert revisions == sorted(set(revisions))
    assert frames[0]["data"] == task
    assert frames[1]["data"] == patched.json()
    assert frames[2]["data"] is None
    assert frames[2]["id"] == task["id"]
    assert frames[3]["id"] == job.json()["id"]
    assert frames[3]["data"]["name"] == "a job"
