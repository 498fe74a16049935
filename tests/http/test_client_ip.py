"""Which address a request is counted and judged by: the peer, or what trusted proxies say."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.apps import client_for, running_app

BEHIND_PROXY = {
    "rate_limit_enabled": True,
    "rate_limit_reads": "2/minute",
    "trusted_proxies": "127.0.0.1",
}


async def reads_left(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    """How many of three reads with `headers` pass (the budget is two a minute)."""
    passed = 0
    for _ in range(3):
        status = (await client.get("/api/v1/nothing", headers=headers)).status_code
        assert status in (404, 429)
        passed += status == 404
    return passed


async def test_a_forwarded_hop_with_a_port_or_brackets_is_its_client(tmp_path: Path) -> None:
    hops = [
        "203.0.113.1:5678",
        "[2001:db8::1]:443",
        "[2001:db8::2]",
        '"203.0.113.3"',
        " 203.0.113.4",
    ]
    async with running_app(tmp_path, **BEHIND_PROXY) as app, client_for(app) as proxy:
        for hop in hops:
            # each client has its own budget; the proxy's address is never the key
            assert await reads_left(proxy, {"X-Forwarded-For": hop}) == 2, hop
            response = await proxy.get("/metrics", headers={"X-Forwarded-For": hop})
            assert response.status_code == 403
            assert response.json()["error"]["code"] == 403
        for hop in ("[::1]:80", "127.0.0.1:9100"):
            response = await proxy.get("/metrics", headers={"X-Forwarded-For": hop})
            assert response.status_code == 200


async def test_an_unparseable_hop_is_never_loopback(tmp_path: Path) -> None:
    async with running_app(tmp_path, **BEHIND_PROXY) as app, client_for(app) as proxy:
        for hop in ("garbage", "1.2.3", "::1::", "[::1", "127.0.0.1:http", "unknown", "_hidden"):
            for header in (hop, f"127.0.0.1, {hop}, 127.0.0.1"):
                response = await proxy.get("/metrics", headers={"X-Forwarded-For": header})
                assert response.status_code == 403, header


async def test_rfc_7239_forwarded_names_the_client(tmp_path: Path) -> None:
    settings = {**BEHIND_PROXY, "forwarded_header": "Forwarded"}
    async with running_app(tmp_path, **settings) as app, client_for(app) as proxy:
        one = {"Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https;by=127.0.0.1'}
        assert await reads_left(proxy, one) == 2
        # a forged left-most element is not believed: the proxy's own element names the client
        two = {"Forwarded": "for=127.0.0.1, For=192.0.2.60;proto=http"}
        assert await reads_left(proxy, two) == 2
        assert (await proxy.get("/metrics", headers=two)).status_code == 403
        # the header the proxy does not set is passed through from the client: ignored
        forged = {"Forwarded": "for=192.0.2.61", "X-Forwarded-For": "127.0.0.1"}
        assert (await proxy.get("/metrics", headers=forged)).status_code == 403
        hidden = {"Forwarded": "for=_abc123, for=127.0.0.1"}
        assert (await proxy.get("/metrics", headers=hidden)).status_code == 403
        broken = {"Forwarded": 'for="127.0.0.1'}
        assert (await proxy.get("/metrics", headers=broken)).status_code == 403
        local = {"Forwarded": 'for="[::1]:51000"'}
        assert (await proxy.get("/metrics", headers=local)).status_code == 200


async def test_a_request_through_a_proxy_on_loopback_is_not_loopback(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as proxy:
        assert (await proxy.get("/metrics")).status_code == 200
        for name, value in [
            ("X-Forwarded-For", "203.0.113.5"),
            ("Forwarded", "for=203.0.113.5"),
            ("X-Real-IP", "203.0.113.5"),
            ("X-Forwarded-For", "127.0.0.1"),
        ]:
            response = await proxy.get("/metrics", headers={name: value})
            assert response.status_code == 403, name
            assert "ORCH_METRICS_TOKEN" in response.json()["error"]["message"]
