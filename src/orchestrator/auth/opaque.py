"""Opaque credentials: refresh tokens, browser-session tokens and API keys.

Each is 43 random base62 characters (256 bits) behind a prefix that names its kind, so a token
shown in the wrong place is recognised at once, and secret scanners can find leaked ones. API
keys also end in a CRC32 checksum (as GitHub's tokens do), so a scanner can tell a real key
from a random string without asking us. Only SHA-256 hashes are ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_CHARS = 43  # 62**43 > 2**256
CHECKSUM_CHARS = 6  # 62**6 > 2**32
REFRESH_PREFIX = "ort_"
BROWSER_PREFIX = "ors_"
API_KEY_PREFIX = "orch_"
API_KEY_SHOWN = len(API_KEY_PREFIX) + 8  # what listings show of a key, to recognise it

_REFRESH = re.compile(rf"^{REFRESH_PREFIX}[0-9A-Za-z]{{{RANDOM_CHARS}}}$")
_BROWSER = re.compile(rf"^{BROWSER_PREFIX}[0-9A-Za-z]{{{RANDOM_CHARS}}}$")
_API_KEY = re.compile(
    rf"^{API_KEY_PREFIX}([0-9A-Za-z]{{{RANDOM_CHARS}}})_([0-9A-Za-z]{{{CHECKSUM_CHARS}}})$"
)


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(BASE62[digit])
    return "".join(reversed(chars))


def _random_part() -> str:
    return "".join(secrets.choice(BASE62) for _ in range(RANDOM_CHARS))


def checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode()), CHECKSUM_CHARS)


def digest(secret: str) -> str:
    """The stored form of an opaque credential."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    return REFRESH_PREFIX + _random_part()


def new_browser_token() -> str:
    return BROWSER_PREFIX + _random_part()


def new_api_key() -> str:
    random_part = _random_part()
    return f"{API_KEY_PREFIX}{random_part}_{checksum(random_part)}"


def successor(token: str, *, key: bytes) -> str:
    """The token that replaces `token` at rotation: derived, so a replay can repeat it.

    HMAC under a key derived from the service's secret: without that key nobody can tell a
    token's successor from a random one, and the server stores nothing but hashes.
    """
    mac = int.from_bytes(hmac.new(key, token.encode(), hashlib.sha256).digest(), "big")
    prefix = token[:4]
    return prefix + _base62(mac, RANDOM_CHARS)


def is_refresh_token(text: str) -> bool:
    return _REFRESH.match(text) is not None


def is_browser_token(text: str) -> bool:
    return _BROWSER.match(text) is not None


def looks_like_api_key(text: str) -> bool:
    """Whether a bearer credential is meant as an API key (to be checked as one)."""
    return text.startswith(API_KEY_PREFIX)


def is_api_key(text: str) -> bool:
    """Well-formed, with a checksum that matches: worth looking up."""
    match = _API_KEY.match(text)
    return match is not None and hmac.compare_digest(checksum(match[1]), match[2])
