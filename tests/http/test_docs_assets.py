"""The documentation pages' assets: served by the service, compressed when asked, revalidated."""

from __future__ import annotations

import gzip
from pathlib import Path

from orchestrator.http.static import accepts_gzip
from tests.support.apps import client_for, running_app


async def test_docs_pages_load_only_assets_the_service_serves(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            assert "http" not in html  # no CDN, no other host
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            response = await client.get(f"/docs/assets/{asset}")
            assert response.status_code == 200
            assert len(response.content) > 100_000
        init = await client.get("/docs/assets/swagger-init.js")
        assert init.headers["content-type"] == "text/javascript; charset=utf-8"
        assert "/openapi.json" in init.text
        assert (await client.get("/docs/assets/nothing.js")).status_code == 404


async def test_assets_are_gzipped_only_for_clients_that_ask(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        path = "/docs/assets/swagger-ui-bundle.js"
        plain = await client.get(path, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.headers["vary"] == "Accept-Encoding"
        raw = await client.send(
            client.build_request("GET", path, headers={"Accept-Encoding": "gzip, br"}),
            stream=True,
        )
        compressed = b"".join([chunk async for chunk in raw.aiter_raw()])
        await raw.aclose()
        assert raw.headers["content-encoding"] == "gzip"
        assert len(compressed) < len(plain.content) / 2
        assert gzip.decompress(compressed) == plain.content
        assert raw.headers["etag"] != plain.headers["etag"]


async def test_assets_answer_304_to_their_own_etag(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        first = await client.get("/docs/assets/swagger-ui.css")
        again = await client.get(
            "/docs/assets/swagger-ui.css", headers={"If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == first.headers["etag"]


def test_accept_encoding_is_read_as_rfc_9110_says() -> None:
    assert accepts_gzip("gzip")
    assert accepts_gzip("deflate, GZIP;q=0.5")
    assert accepts_gzip("*")
    assert not accepts_gzip(None)
    assert not accepts_gzip("br, deflate")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("gzip;q=0.000")
    assert not accepts_gzip("gzip;q=nonsense")
