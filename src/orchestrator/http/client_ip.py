"""The client's address: the peer, or what trusted proxies say in their forwarding header."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import Literal

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]

# What the client is called when a trusted proxy wrote something that names no one.
UNKNOWN = "unknown"
# Headers that show a request came through a proxy, whatever the proxy is trusted with.
FORWARDING_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})

# RFC 7239 §6: "[v6]:port", "v4:port" or a bare address; an obfuscated port is `_` + token.
_BRACKETED = re.compile(r"^\[([^\]]+)\](?::(?:\d{1,5}|_[A-Za-z0-9._-]+))?$")
_V4_WITH_PORT = re.compile(r"^([0-9.]+):(?:\d{1,5}|_[A-Za-z0-9._-]+)$")
# RFC 7239 §6.2-6.3: names a proxy may give a client whose address it hides or does not know.
_OBFUSCATED = re.compile(r"^(?:unknown|_[A-Za-z0-9._-]+)$", re.IGNORECASE)
# One `pair` of a Forwarded element: token "=" (token / quoted-string).
_PAIR = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')


def parse_node(text: str) -> str | None:
    """The address a hop names (normalised), an RFC 7239 identifier, or None for garbage."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    if _OBFUSCATED.match(text):
        return text.lower() if text.lower() == UNKNOWN else text
    match = _BRACKETED.match(text) or _V4_WITH_PORT.match(text)
    candidate = match.group(1) if match else text
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _forwarded_for(value: str) -> Iterator[str | None]:
    """The `for=` node of each element of a `Forwarded` header (None where it is unreadable)."""
    for element in _split_elements(value):
        if not element.strip():
            continue
        node: str | None = None
        position = 0
        while position < len(element):
            match = _PAIR.match(element, position)
            if match is None:
                node = None
                break
            if match.group(1).lower() == "for":
                raw = match.group(2)
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                node = parse_node(raw)
            position = match.end()
            if position < len(element):
                if element[position] != ";":
                    node = None
                    break
                position += 1
        yield node


def _split_elements(value: str) -> Iterator[str]:
    """Split on the commas that are outside quoted strings."""
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            yield value[start:index]
            start = index + 1
    yield value[start:]


class ClientAddress:
    """Resolves client addresses; only the configured proxies are believed about who sent a request.

    The proxies' header is a setting, not a guess: a proxy passes the header it does not set
    through untouched, so a client could put any address in it.
    """

    def __init__(
        self, trusted_proxies: Iterable[str] = (), header: ForwardedHeader = "x-forwarded-for"
    ) -> None:
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies
        )
        self._header = header.encode()

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def of(self, scope: Scope) -> str:
        """The client's address (or an RFC 7239 identifier such as `unknown`)."""
        return self._resolve(scope)[0]

    def is_local(self, scope: Scope) -> bool:
        """Whether the request came from this host's loopback, not through a proxy."""
        address, from_peer = self._resolve(scope)
        if not is_loopback(address):
            return False
        if from_peer:
            # A proxy on loopback in front of us makes everyone look local: a request that
            # says it was forwarded (believed or not) is not a loopback client's own.
            return not any(name in FORWARDING_HEADERS for name, _ in scope.get("headers", ()))
        return True

    def _resolve(self, scope: Scope) -> tuple[str, bool]:
        """The client's address, and whether it is the peer itself (no hop was believed)."""
        client = scope.get("client")
        peer = str(client[0]) if client else UNKNOWN
        if not self._trusted or not self.is_trusted(peer):
            return peer, True
        hops = self._hops(scope)
        # Each proxy appends the address it saw; walk back from ours and stop at the first
        # hop no trusted proxy vouches for. Entries left of it may be forged by the client.
        current, from_peer = peer, True
        for hop in reversed(hops):
            if hop is None:
                # A trusted proxy wrote something that is no address: the client is unknown,
                # and certainly not the proxy's own loopback.
                return UNKNOWN, False
            current, from_peer = hop, False
            if not self.is_trusted(hop):
                return hop, False
        return current, from_peer

    def _hops(self, scope: Scope) -> list[str | None]:
        hops: list[str | None] = []
        for name, value in scope.get("headers", ()):
            if name != self._header:
                continue
            text = value.decode("latin-1")
            if self._header == b"forwarded":
                hops.extend(_forwarded_for(text))
            else:
                hops.extend(parse_node(hop) for hop in text.split(",") if hop.strip())
        return hops


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
