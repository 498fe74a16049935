"""Data responses and 304s carry exactly the headers Starlette builds for the same arguments."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from orchestrator.http.responses import data_headers, data_response, not_modified

ETAG = '"3f2a-etag"'
BODY = b'{"id":"x","title":"caf\xc3\xa9"}'


@pytest.mark.parametrize("status", [200, 201, 202])
@pytest.mark.parametrize("extra", [None, {"Location": "/api/v1/jobs/x", "Link": "<x>"}])
def test_data_responses_carry_what_starlette_would_send(
    status: int, extra: dict[str, str] | None
) -> None:
    made = data_response(BODY, ETAG, status=status, headers=extra)
    plain = Response(
        BODY, status_code=status, media_type="application/json", headers=data_headers(ETAG, extra)
    )
    assert (made.status_code, made.body, made.raw_headers) == (
        plain.status_code,
        plain.body,
        plain.raw_headers,
    )
    assert made.headers["content-length"] == str(len(BODY))


@pytest.mark.parametrize("extra", [None, {"Link": "<x>"}])
def test_not_modified_carries_the_caching_headers_and_no_body(extra: dict[str, str] | None) -> None:
    made = not_modified(ETAG, extra)
    plain = Response(status_code=304, headers=data_headers(ETAG, extra))
    assert (made.status_code, made.body, made.raw_headers) == (304, b"", plain.raw_headers)
    assert "content-length" not in made.headers
