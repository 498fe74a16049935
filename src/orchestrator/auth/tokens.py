"""Access tokens: issue and verify JWTs with a pinned algorithm and required claims."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from orchestrator.errors import Unauthorized

REQUIRED_CLAIMS = ("sub", "iss", "aud", "exp", "iat", "jti")
# A WebSocket client that cannot set headers (a browser) offers its token as the subprotocol
# `bearer.<token>` (as Kubernetes does), next to `orchestrator`, which the server then picks.
BEARER_SUBPROTOCOL_PREFIX = "bearer."
WEBSOCKET_SUBPROTOCOL = "orchestrator"
_CACHE_LIMIT = 10_000


def subprotocol_token(subprotocols: Iterable[str]) -> str | None:
    """The token offered as a `bearer.<token>` WebSocket subprotocol, if any."""
    for offered in subprotocols:
        if offered.startswith(BEARER_SUBPROTOCOL_PREFIX) and len(offered) > 7:
            return offered.removeprefix(BEARER_SUBPROTOCOL_PREFIX)
    return None


def chosen_subprotocol(subprotocols: Iterable[str]) -> str | None:
    """What the server answers: `orchestrator` when offered, else the client's bearer offer.

    A browser fails a handshake whose answer is none of the protocols it offered, so one that
    offers only its token gets that back (on its own connection; proxies log no answers).
    """
    offered = list(subprotocols)
    if WEBSOCKET_SUBPROTOCOL in offered:
        return WEBSOCKET_SUBPROTOCOL
    return next((p for p in offered if p.startswith(BEARER_SUBPROTOCOL_PREFIX)), None)


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    iat: float
    exp: float
    jti: str
    sid: str | None = None  # the session the token was issued for (none on older tokens)


@dataclass(frozen=True, slots=True)
class Issued:
    """An access token and the claims it was made from (kept to re-issue it identically)."""

    token: str
    jti: str
    iat_us: int  # `iat` in microseconds: the claim is `iat_us / 1e6`
    exp: int


class TokenService:
    def __init__(
        self,
        *,
        secret: str,
        algorithm: str,
        issuer: str,
        audience: str,
        lifetime_seconds: int,
        leeway_seconds: int,
    ) -> None:
        self._secret = secret
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.lifetime_seconds = lifetime_seconds
        self.leeway_seconds = leeway_seconds
        # Verified tokens by their exact text: a hit skips the HMAC but never the expiry check.
        self._verified: dict[str, Claims] = {}

    def issue(self, subject: str) -> str:
        """A token without a session (kept for callers that have none)."""
        now = time.time()
        payload = {
            "sub": subject,
            "iss": self.issuer,
            "aud": self.audience,
            # sub-second precision, so that a token issued just after a password change
            # is told apart from one issued just before it
            "iat": round(now, 6),
            "exp": int(now) + self.lifetime_seconds,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._secret, algorithm=self.algorithm)

    def issue_for_session(self, subject: str, *, sid: str, not_after: float) -> Issued:
        """A token of session `sid`, expiring with its lifetime or at `not_after`."""
        now = time.time()
        iat_us = int(now * 1_000_000)
        exp = min(int(now) + self.lifetime_seconds, int(not_after))
        return self.reissue(subject, sid=sid, jti=uuid.uuid4().hex, iat_us=iat_us, exp=exp)

    def reissue(self, subject: str, *, sid: str, jti: str, iat_us: int, exp: int) -> Issued:
        """The token these claims make: HMAC signing is deterministic, so the same text."""
        payload = {
            "sub": subject,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": iat_us / 1_000_000,
            "exp": exp,
            "jti": jti,
            "sid": sid,
        }
        token = jwt.encode(payload, self._secret, algorithm=self.algorithm)
        return Issued(token=token, jti=jti, iat_us=iat_us, exp=exp)

    def verify(self, token: str) -> Claims:
        """The token's claims, or `Unauthorized` for anything short of a valid token."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = claims
        if time.time() > claims.exp + self.leeway_seconds:
            self._verified.pop(token, None)
            raise Unauthorized("Token expired")
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("Invalid token") from None
        sub, iat, exp, jti = payload["sub"], payload["iat"], payload["exp"], payload["jti"]
        sid = payload.get("sid")
        if not isinstance(sub, str) or not sub or not isinstance(jti, str):
            raise Unauthorized("Invalid token")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise Unauthorized("Invalid token")
        if sid is not None and (not isinstance(sid, str) or not sid or len(sid) > 64):
            raise Unauthorized("Invalid token")
        return Claims(sub=sub, iat=float(iat), exp=float(exp), jti=jti, sid=sid)
