from __future__ import annotations

import re
from pathlib import Path

from tests.support.apps import client_for, running_app

UNSAFE: list[bytes] = [
    b"x" * 129,
    b"has space",
    b"<script>",
    b"semi;colon",
    "ünïcode".encode(),
    b"a/b",
    b"",
]


async def test_request_ids_are_kept_when_safe_and_replaced_otherwise(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        rid = "abc.DEF_123-" + "x" * 116  # 128 characters
        response = await client.get("/nowhere", headers={"X-Request-ID": rid})
        assert response.headers["x-request-id"] == rid
        assert response.json()["error"]["request_id"] == rid

        for unsafe in UNSAFE:
            response = await client.get("/nowhere", headers={b"X-Request-ID": unsafe})
            echoed = response.headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{32}", echoed), unsafe
            assert response.json()["error"]["request_id"] == echoed

        first = await client.get("/health")
        second = await client.get("/health")
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
