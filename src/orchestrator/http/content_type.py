"""Request bodies are JSON or nothing: 415 for another content type, 422 (as for any other
invalid body) for JSON that is malformed or ambiguous (NaN, duplicate keys, lone surrogates,
too deep, numbers that do not fit) or holds NUL characters, which no database column can store
faithfully. Checked once, before any route, which is handed the parsed document
(`parsed_body`) instead of parsing the body again."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.http.errors import error_response
from orchestrator.text import MAX_JSON_DEPTH


class _Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_json(content_type: bytes) -> bool:
    """`application/json` or `application/*+json`, with an optional UTF-8 charset."""
    media, _, params = content_type.decode("latin-1").partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Rejected(422, "The request body has duplicate keys")
    for key in result:
        if "\x00" in key:
            raise _Rejected(422, "The request body contains a NUL character")
    return result


def _no_nul_nor_depth(value: Any) -> tuple[int, int]:
    """Refuse NUL characters (in values; keys are checked by `_unique_keys` or below) and
    nesting past the limit. Returns the members of every object (after orjson kept one of
    each duplicate key) and the colons in every string, keys included."""
    members = colons = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise _Rejected(422, "The request body contains a NUL character")
            colons += item.count(":")
            continue
        if isinstance(item, dict):
            members += len(item)
            for key in item:
                if "\x00" in key:
                    raise _Rejected(422, "The request body contains a NUL character")
                colons += key.count(":")
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise _Rejected(422, f"Objects and arrays nest at most {MAX_JSON_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in children)
    return members, colons


# A run of 19 digits may be an integer beyond 64 bits, which orjson turns into a float where
# `json.loads` keeps it exact (and the routes then refuse it): such bodies take the strict pass.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


# Where the parsed document of a checked JSON body waits for the route (`parsed_body`).
PARSED_BODY = "orchestrator.parsed_body"
NO_BODY: Any = object()


def parsed_body(scope: Scope) -> Any:
    """The JSON document this middleware parsed from the request's body, or `NO_BODY`."""
    return scope.get(PARSED_BODY, NO_BODY)


def check_json(body: bytes) -> Any:
    """The document `body` holds; `_Rejected` unless it is one unambiguous JSON document.

    The document is what `json.loads(body)` returns, as the framework would have parsed it.
    """
    try:
        # orjson refuses invalid UTF-8, lone surrogates, NaN/Infinity, numbers that overflow
        # a double and nesting past 1024, without recursing on our stack.
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Rejected(422, f"The request body is not valid JSON: {exc.msg}") from exc
    members, colons = _no_nul_nor_depth(parsed)  # before the pass below, which recurses
    # orjson keeps the last of duplicate keys silently. Every member of an object in the
    # text has one colon outside strings; without `\\u` escapes, a string's colons in the
    # text are those of its value. So when the text's colons, less those in strings, are
    # as many as the members orjson kept, no key was repeated, and orjson's document is
    # `json.loads`'s (unless a number did not fit orjson's integers, see `_LONG_DIGITS`).
    # Otherwise a second, strict pass decides, and its document is handed on.
    if (
        b"\\u" not in body
        and body.count(b":") - colons == members
        and _LONG_DIGITS.search(body) is None
    ):
        return parsed
    try:
        return json.loads(body, object_pairs_hook=_unique_keys)
    except (RecursionError, ValueError) as exc:
        raise _Rejected(422, "The request body is not valid JSON") from exc


FORM = b"application/x-www-form-urlencoded"


class JsonContentTypeMiddleware:
    """Every request that carries a body must be JSON, and well-formed JSON at that.

    `form_paths` also take an HTML form post (the browser sign-in), parsed by their route.
    """

    def __init__(self, app: ASGIApp, *, form_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.form_paths = form_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        content_type: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                has_body = value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"content-type":
                content_type = value
        if not has_body or (
            content_type is not None
            and content_type.partition(b";")[0].strip().lower() == FORM
            and scope["path"] in self.form_paths
        ):
            await self.app(scope, receive, send)
            return
        if content_type is None or not is_json(content_type):
            refusal = "The request body must be JSON (Content-Type: application/json)"
            await error_response(scope, 415, refusal)(scope, receive, send)
            return
        # The body limit (outside us) bounds what we buffer here.
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            try:
                scope[PARSED_BODY] = check_json(body)
            except _Rejected as rejected:
                response = error_response(
                    scope,
                    rejected.status,
                    "The request is not valid",
                    error_type="validation_error",
                    details=[{"field": "body", "reason": rejected.message}],
                )
                await response(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
