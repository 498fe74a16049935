from __future__ import annotations

from typing import Any

from orchestrator.observability.logging import REDACTED, Redactor

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"


def scrub(event: dict[str, Any], *secrets: str) -> dict[str, Any]:
    redactor = Redactor()
    redactor.protect(*secrets)
    return dict(redactor(None, "info", event))


def test_credential_shaped_text_is_removed() -> None:
    event = scrub(
        {
            "event": f'127.0.0.1 - "WebSocket /ws?a=1&token={TOKEN}&b=2"',
            "header": "Authorization: Bearer opaque-credential-123",
            "url": "/path?access_token=abc123&x=1",
        }
    )
    assert TOKEN not in str(event)
    assert event["event"] == f'127.0.0.1 - "WebSocket /ws?a=1&token={REDACTED}&b=2"'
    assert event["header"] == f"Authorization: Bearer {REDACTED}"
    assert event["url"] == f"/path?access_token={REDACTED}&x=1"


def test_known_secret_values_and_secret_fields_are_removed() -> None:
    event = scrub(
        {
            "event": "connect failed for postgresql://orch:hunter2-db-pass@db/orch",
            "exception": "Traceback ...\nValueError: bad key s3cr3t-signing-key",
            "password": "anything",
            "nested": {"items": ["s3cr3t-signing-key"]},
        },
        "hunter2-db-pass",
        "s3cr3t-signing-key",
        "",
        None,  # type: ignore[arg-type]
    )
    assert "hunter2" not in str(event)
    assert "s3cr3t" not in str(event)
    assert event["password"] == REDACTED
    assert event["nested"] == {"items": [REDACTED]}
